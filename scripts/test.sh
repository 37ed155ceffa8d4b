#!/usr/bin/env bash
# Install what the test suite needs, then run it. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# install_debian PACKAGE: Debian's package, as root or with sudo; without
# apt-get the tests that need it skip with a message.
install_debian() {
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
    elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
    else
        echo "scripts/test.sh: $1 is not installed; the tests that need it will be skipped" >&2
    fi
}

# The rate-limit tests run a real Redis server (Debian's redis-server).
command -v redis-server >/dev/null 2>&1 || install_debian redis-server
# The deployment tests (tests/test_deploy.py) run Debian's nginx in front of
# two replicas; nginx-light is enough.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || install_debian nginx-light
# The page tests drive Debian's headless Chromium with Playwright for Python
# (never a downloaded browser).
command -v chromium >/dev/null 2>&1 || install_debian chromium
# A packaged redis-server or nginx may start as a service; the tests start
# their own on free ports and do not need it.

# The locked set (requirements-test.lock, made by scripts/lock.sh), then the
# package alone: CI tests exactly the versions the lock names.
python3 -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-test.lock
python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
exec python3 -m pytest "$@"
