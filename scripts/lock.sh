#!/usr/bin/env bash
# Regenerate the lock files from setup.cfg (and pyproject.toml's build
# requirements) with uv, resolving on PyPI:
#   requirements.lock       install_requires + the redis extra + the build
#                           backend: what the Dockerfile installs
#   requirements-test.lock  the same + the test extra: what CI installs
# Both are for CPython 3.11 (Debian bookworm's python3 and this machine's) on
# manylinux x86_64, wheels only, with hashes. The script then resolves both
# again for aarch64 and stops if a pin differs (a package without an aarch64
# wheel at that version would make the image x86_64-only).
#
# Rerun it after changing a dependency in setup.cfg: pins already in the
# locks are kept where they still satisfy setup.cfg, so only what changed
# moves. `scripts/lock.sh --upgrade` moves everything to the newest releases;
# `scripts/lock.sh --upgrade-package numpy` moves one. Needs uv
# (`pip install uv`).
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v uv >/dev/null 2>&1; then
    uv=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
    uv=(python3 -m uv)
else
    echo "scripts/lock.sh: uv is not installed: pip install uv" >&2
    exit 2
fi

PYTHON_VERSION=3.11
PLATFORM=x86_64-manylinux_2_28
OTHER_PLATFORM=aarch64-manylinux_2_28

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The inputs are read from setup.cfg and pyproject.toml on every run, so the
# locks cannot drift from them (tests/test_lock.py checks the result).
python3 - "$work" <<'EOF'
import configparser
import sys
import tomllib
from pathlib import Path

work = Path(sys.argv[1])
cfg = configparser.ConfigParser()
cfg.read("setup.cfg")


def lines(text):
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


install = lines(cfg["options"]["install_requires"])
extras = {name: lines(value) for name, value in cfg["options.extras_require"].items()}
build = tomllib.loads(Path("pyproject.toml").read_text())["build-system"]["requires"]
runtime = install + extras["redis"] + build
(work / "runtime.in").write_text("\n".join(runtime) + "\n")
(work / "test.in").write_text("\n".join(runtime + extras["test"]) + "\n")
EOF

compile() {  # compile INPUT OUTPUT PLATFORM [extra uv options...]
    local input=$1 output=$2 platform=$3
    shift 3
    "${uv[@]}" pip compile --quiet "$input" --output-file "$output" \
        --python-version "$PYTHON_VERSION" --python-platform "$platform" \
        --only-binary :all: --custom-compile-command "scripts/lock.sh" "$@"
}
pins() {  # the name==version lines of a lock, for comparing
    grep -E '^[A-Za-z0-9._-]+==' "$1" | sed 's/ .*//' | sort
}

# The uv options given to this script (--upgrade, --upgrade-package NAME)
# apply to the test lock; the runtime lock is held to the test lock's pins,
# so the image runs exactly the versions CI tested.
[ -f requirements-test.lock ] && cp requirements-test.lock "$work/test.lock"
compile "$work/test.in" "$work/test.lock" "$PLATFORM" --generate-hashes "$@"
pins "$work/test.lock" >"$work/test.pins"
[ -f requirements.lock ] && cp requirements.lock "$work/runtime.lock"
compile "$work/runtime.in" "$work/runtime.lock" "$PLATFORM" --generate-hashes --constraint "$work/test.pins"

for name in runtime test; do
    compile "$work/$name.in" "$work/$name.other" "$OTHER_PLATFORM" --constraint "$work/test.pins"
    if ! diff <(pins "$work/$name.lock") <(pins "$work/$name.other") >"$work/diff"; then
        echo "scripts/lock.sh: the $name lock resolves differently on $OTHER_PLATFORM:" >&2
        cat "$work/diff" >&2
        exit 1
    fi
done

# uv names the temporary inputs in its "via" notes; name setup.cfg instead.
for name in runtime test; do
    sed -e "s|-r $work/$name.in|setup.cfg, pyproject.toml|" -e "s|$work/test.pins|requirements-test.lock|" "$work/$name.lock" >"$work/$name.out"
done
mv "$work/runtime.out" requirements.lock
mv "$work/test.out" requirements-test.lock
echo "scripts/lock.sh: requirements.lock ($(pins requirements.lock | wc -l) packages)," \
     "requirements-test.lock ($(pins requirements-test.lock | wc -l) packages)," \
     "same pins on $PLATFORM and $OTHER_PLATFORM"
