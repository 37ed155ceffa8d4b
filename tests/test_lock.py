"""The lock files agree with setup.cfg, and CI installs the locked set."""

import configparser
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
# The locks are resolved for CPython 3.11 on Linux (scripts/lock.sh).
LOCK_ENVIRONMENT = {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux",
                    "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
                    "os_name": "posix", "extra": ""}


def _lines(text):
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def setup_requirements():
    """(install_requires, extras, build requirements) as Requirement objects."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    install = [Requirement(r) for r in _lines(cfg["options"]["install_requires"])]
    extras = {name: [Requirement(r) for r in _lines(v)] for name, v in cfg["options.extras_require"].items()}
    build = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]]
    return install, extras, build


def read_lock(name):
    """{canonical name: (version, [hashes])} from a uv/pip-tools lock."""
    pins, current = {}, None
    for line in (ROOT / name).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = (match.group(2), [])
        elif current and (hashed := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            pins[current][1].append(hashed.group(1))
    return pins


def assert_covered(requirements, lock_name):
    pins = read_lock(lock_name)
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate(LOCK_ENVIRONMENT):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} (setup.cfg) is not in {lock_name}: run scripts/lock.sh"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock_name} pins {name}=={version}, outside setup.cfg's {requirement}: run scripts/lock.sh"
        )


class TestLocksMatchSetupCfg:
    """Every requirement in setup.cfg is pinned, within its range."""

    def test_runtime_lock_covers_install_requires_redis_and_build(self):
        """requirements.lock (what the Dockerfile installs) pins every
        install_requires entry, the redis extra and the build backend."""
        install, extras, build = setup_requirements()
        assert_covered(install + extras["redis"] + build, "requirements.lock")

    def test_test_lock_covers_every_extra(self):
        """requirements-test.lock (what CI installs) pins all of that and
        every extra, the test extra included."""
        install, extras, build = setup_requirements()
        assert_covered(install + build + [r for reqs in extras.values() for r in reqs], "requirements-test.lock")

    def test_image_runs_the_versions_ci_tested(self):
        """Every package in the runtime lock has the same version in the test
        lock, so the image runs exactly what the test suite ran against."""
        runtime, test = read_lock("requirements.lock"), read_lock("requirements-test.lock")
        differing = {name: (version, test.get(name, (None,))[0]) for name, (version, _) in runtime.items()
                     if test.get(name, (None,))[0] != version}
        assert not differing, f"runtime vs test lock: {differing}"

    @pytest.mark.parametrize("lock_name", ["requirements.lock", "requirements-test.lock"])
    def test_every_pin_is_exact_and_hashed(self, lock_name):
        """Each entry is name==version with at least one sha256, which puts
        pip into --require-hashes mode for the whole file."""
        pins = read_lock(lock_name)
        assert len(pins) >= 10
        unhashed = [name for name, (_, hashes) in pins.items() if not hashes]
        assert not unhashed, f"{lock_name}: no hash for {unhashed}"
        loose = [line for line in _lines((ROOT / lock_name).read_text())
                 if re.match(r"^[A-Za-z0-9]", line) and "==" not in line]
        assert not loose, f"{lock_name}: unpinned lines {loose}"

    def test_requirements_txt_is_the_ranges_and_points_to_the_lock(self):
        """requirements.txt lists setup.cfg's runtime ranges (install_requires
        and redis) and says the exact versions are in requirements.lock."""
        install, extras, _ = setup_requirements()
        text = (ROOT / "requirements.txt").read_text()
        listed = sorted(str(Requirement(line)) for line in _lines(text))
        assert listed == sorted(str(r) for r in install + extras["redis"])
        assert "requirements.lock" in text and "scripts/lock.sh" in text


class TestCiInstallsTheLock:
    """scripts/test.sh installs the locked set, then the package alone."""

    def test_pip_lines_use_the_test_lock(self):
        """The test script installs requirements-test.lock with hashes and the
        package with --no-deps, so nothing unlocked comes in."""
        script = (ROOT / "scripts" / "test.sh").read_text()
        pip_lines = [line for line in script.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
        assert any("-r requirements-test.lock" in line and "--require-hashes" in line for line in pip_lines), pip_lines
        assert any("--no-deps" in line and "-e ." in line for line in pip_lines), pip_lines
        assert not any("[test]" in line for line in pip_lines), "the extra would resolve unlocked versions"
