"""The Dockerfile, as scripts/rootfs_check.py reads it, and the real run.

The fast tests always run: the script's reader understands every instruction
in the Dockerfile, and what the Dockerfile does (lock install, user, config,
port, CMD) is what the README says. The real run (debootstrap, chroot, the
server in its own network namespace) takes minutes and needs root: it runs
when CI=true (unless MOONTREK_ROOTFS=0) or MOONTREK_ROOTFS=1, and skips
with a message otherwise.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "rootfs_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("rootfs_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rootfs = _load_script()
DOCKERFILE = (ROOT / "Dockerfile").read_text()
README = (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def plan():
    return rootfs.load_plan(DOCKERFILE)


def runs(plan):
    return [step for step in plan.steps if isinstance(step, rootfs.RunStep)]


def copies(plan):
    return [step for step in plan.steps if isinstance(step, rootfs.CopyStep)]


class TestReader:
    """The script's Dockerfile reader: the subset it knows, loud about the rest."""

    def test_understands_every_instruction_in_the_dockerfile(self, plan):
        """Every instruction of the real Dockerfile is one the script performs
        or checks, so the script follows the Dockerfile rather than a copy."""
        keywords = {ins.keyword for ins in rootfs.parse_dockerfile(DOCKERFILE)}
        assert keywords <= set(rootfs.SUPPORTED)
        assert {"FROM", "RUN", "COPY", "USER", "CMD"} <= keywords
        assert plan.cmd and runs(plan) and copies(plan)

    @pytest.mark.parametrize("line", [
        "ADD https://example.invalid/x /x",
        "ARG VERSION=1",
        "ENTRYPOINT [\"moontrek\"]",
        "ONBUILD RUN true",
    ])
    def test_unknown_instruction_fails_loudly(self, line):
        """An instruction outside the subset stops the script, naming the line."""
        with pytest.raises(rootfs.DockerfileError, match="line 2: "):
            rootfs.load_plan(f"FROM debian:bookworm-slim\n{line}\nCMD [\"true\"]\n")

    @pytest.mark.parametrize("text, message", [
        ("FROM python:3.12-slim\nCMD [\"x\"]\n", "debootstrap rebuilds it"),
        ("FROM debian:bookworm-slim\nCMD moontrek serve\n", "exec form"),
        ("FROM debian:bookworm-slim\nCOPY --chown=a:b x /x\nCMD [\"x\"]\n", "options"),
        ("FROM debian:bookworm-slim\nCOPY *.py /x/\nCMD [\"x\"]\n", "wildcards"),
        ("FROM debian:bookworm-slim\nRUN [\"true\"]\nCMD [\"x\"]\n", "shell form"),
        ("FROM debian:bookworm-slim\nENV A 1\nCMD [\"x\"]\n", "KEY=VALUE"),
        ("FROM debian:bookworm-slim\nRUN true \\\n", "continuation"),
        ("FROM debian:bookworm-slim\nRUN true\n", "no CMD"),
    ])
    def test_unsupported_forms_fail_loudly(self, text, message):
        """Forms the script would get wrong are refused rather than guessed."""
        with pytest.raises(rootfs.DockerfileError, match=message):
            rootfs.load_plan(text)

    def test_continuations_comments_env_and_workdir(self):
        """Continuations join (comment lines inside them skipped), ENV expands
        $VAR from earlier ENV, and RUN and COPY resolve against WORKDIR."""
        plan = rootfs.load_plan(
            "FROM debian:bookworm-slim\n"
            "# a comment\n"
            "ENV A=/opt/a \\\n"
            "    PATH=/opt/a/bin:$PATH\n"
            "WORKDIR /app\n"
            "COPY x.txt ./sub/\n"
            "RUN echo one \\\n"
            "# skipped\n"
            "    && echo two\n"
            "USER someone\n"
            "CMD [\"prog\", \"--flag\"]\n"
        )
        assert plan.env["PATH"] == "/opt/a/bin:" + rootfs.IMAGE_PATH
        assert copies(plan)[0].dest == "/app/sub/"
        (run,) = runs(plan)
        assert run.command == "echo one && echo two" and run.workdir == "/app" and run.user == "root"
        assert plan.user == "someone" and plan.cmd == ["prog", "--flag"]


class TestDockerignore:
    """The .dockerignore subset the script applies to COPY."""

    def test_patterns(self, tmp_path):
        """`**/x` matches at any depth, a folder pattern covers its contents,
        and an anchored name does not match deeper down."""
        (tmp_path / ".dockerignore").write_text("**/__pycache__\nconfig/config.py\n*.egg-info\n")
        patterns = rootfs.load_dockerignore(tmp_path)
        assert rootfs.ignored("moontrek/registration/__pycache__/a.pyc", patterns)
        assert rootfs.ignored("__pycache__/a.pyc", patterns)
        assert rootfs.ignored("config/config.py", patterns)
        assert rootfs.ignored("moontrek.egg-info/PKG-INFO", patterns)
        assert not rootfs.ignored("config/config.py.docker", patterns)
        assert not rootfs.ignored("moontrek/config.py", patterns)

    def test_layer_key_follows_copied_contents(self, tmp_path):
        """The layer cache's key for a COPY changes with a copied file's
        contents, and not with a .dockerignore'd file."""
        (tmp_path / "pkg").mkdir()
        (tmp_path / "pkg" / "a.py").write_text("one")
        (tmp_path / ".dockerignore").write_text("**/__pycache__\n")
        step = rootfs.CopyStep(["pkg"], "/app/pkg")

        def key():
            return rootfs._step_digest(step, tmp_path, rootfs.load_dockerignore(tmp_path))

        before = key()
        (tmp_path / "pkg" / "__pycache__").mkdir()
        (tmp_path / "pkg" / "__pycache__" / "a.pyc").write_bytes(b"cache")
        assert key() == before
        (tmp_path / "pkg" / "a.py").write_text("two")
        assert key() != before

    def test_every_copy_source_is_in_the_context(self, plan):
        """Nothing the Dockerfile copies is left out by .dockerignore."""
        patterns = rootfs.load_dockerignore(ROOT)
        for step in copies(plan):
            for source in step.sources:
                assert (ROOT / source).exists(), source
                assert not rootfs.ignored(source, patterns), source


class TestHostPieces:
    """The parts of the real run that read the host."""

    def test_apt_sources_follow_the_hosts_apt(self, tmp_path):
        """The mirror comes from the host's apt: deb822 and one-line entries
        for the suite and its -updates/-security, not other suites, disabled
        stanzas, deb-src or files apt does not read."""
        (tmp_path / "sources.list.d").mkdir()
        (tmp_path / "sources.list.d" / "debian.sources").write_text(
            "Types: deb\n# a comment\nURIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates\n"
            "Components: main\n\n"
            "Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
            "Types: deb\nEnabled: no\nURIs: http://off.test/debian\nSuites: bookworm\nComponents: main\n"
        )
        (tmp_path / "sources.list.d" / "other.list.disabled").write_text("deb http://skip.test/ bookworm main\n")
        (tmp_path / "sources.list").write_text(
            "deb [arch=amd64] http://one.test/debian bookworm contrib # note\n"
            "deb-src http://src.test/debian bookworm main\n"
            "deb http://old.test/debian bullseye main\n"
        )
        assert rootfs.apt_sources("bookworm", tmp_path) == [
            ("http://mirror.test/debian", ["bookworm", "bookworm-updates"], ["main"]),
            ("http://mirror.test/debian-security", ["bookworm-security"], ["main"]),
            ("http://one.test/debian", ["bookworm"], ["contrib"]),
        ]

    def test_mounts_under(self, tmp_path):
        """A fresh folder has no mounts under it; /proc has one (so the check
        that guards deleting the tree does see mounts)."""
        if sys.platform != "linux":
            pytest.skip("reads /proc/self/mountinfo")
        assert rootfs.mounts_under(tmp_path) == []
        assert "/proc" in rootfs.mounts_under("/proc")

    def test_console_problems(self):
        """A logging error in the server's console is named by its message."""
        console = (
            "INFO start\n--- Logging error ---\nTraceback (most recent call last):\n  File \"x\", line 1\n"
            "TypeError: %d format: a real number is required, not str\nMessage: 'listening on %d'\n"
        )
        assert rootfs.console_problems(console) == [
            "TypeError: %d format: a real number is required, not str Message: 'listening on %d'"
        ]
        assert rootfs.console_problems("INFO all good\n") == []


class TestDockerfileMatchesReadme:
    """What the Dockerfile does is what the README's Docker section says."""

    def test_debian_base_with_a_venv(self, plan):
        """debian:bookworm-slim, Debian's python3 and python3-venv, a venv on PATH."""
        assert plan.base == "debian:bookworm-slim" and "debian:bookworm-slim" in README
        apt = next(step.command for step in runs(plan) if "apt-get install" in step.command)
        assert "python3-venv" in apt and "python3 -m venv /opt/venv" in apt
        assert plan.env["PATH"].startswith("/opt/venv/bin:")

    def test_dependencies_come_from_the_lock_with_hashes(self, plan):
        """The lock is copied, installed with --require-hashes, and the
        package goes in afterwards with --no-deps (nothing unlocked)."""
        steps = plan.steps
        lock_copy = next(i for i, s in enumerate(steps) if isinstance(s, rootfs.CopyStep) and s.sources == ["requirements.lock"])
        lock_run = next(i for i, s in enumerate(steps) if isinstance(s, rootfs.RunStep) and "-r requirements.lock" in s.command)
        assert lock_copy < lock_run and "--require-hashes" in steps[lock_run].command
        package = next(s.command for s in runs(plan) if "pip install --no-deps" in s.command)
        assert "--no-build-isolation" in package
        assert "requirements.lock" in README

    def test_unprivileged_user(self, plan):
        """The CMD runs as a user the Dockerfile creates, not root."""
        assert plan.user not in ("root", "0")
        assert any(f"useradd --system --home-dir /app --shell /usr/sbin/nologin {plan.user}" in s.command for s in runs(plan))
        assert "unprivileged user" in README

    def test_config_copy_and_mount_point(self, plan):
        """The image's default config is config/config.py.docker at
        /app/config/config.py, read from the working directory /app."""
        assert any(s.sources == ["config/config.py.docker"] and s.dest == "/app/config/config.py" for s in copies(plan))
        assert plan.workdir == "/app"
        assert "/app/config" in README and "config/config.py.docker" in README

    def test_logs_go_to_the_data_volume(self, plan):
        """The Docker config logs under /app/data, a VOLUME the user owns."""
        config = (ROOT / "config" / "config.py.docker").read_text()
        assert '"log_filepath": "/app/data/moontrek.log"' in config
        assert "/app/data" in plan.volumes
        assert any(f"chown {plan.user} /app/data" in s.command for s in runs(plan))
        assert "/app/data/moontrek.log" in README

    def test_port_80_and_the_cmd(self, plan):
        """EXPOSE 80, and the CMD serves on port 80 on every address
        whatever the mounted config says."""
        assert plan.exposed == [80]
        assert plan.cmd == ["moontrek", "serve", "--host", "0.0.0.0", "--port", "80"]
        assert "port 80" in README and "-p 5000:80" in README

    def test_healthcheck_asks_the_health_route(self, plan):
        """The HEALTHCHECK fetches /api/health on the exposed port."""
        assert plan.healthcheck and "http://127.0.0.1:80/api/health" in plan.healthcheck[-1]


def _rootfs_wanted():
    flag = os.environ.get("MOONTREK_ROOTFS")
    return flag == "1" or (os.environ.get("CI") == "true" and flag != "0")


class TestImageRunForReal:
    """The Dockerfile built from Debian's packages and run (minutes)."""

    def test_rootfs_check(self):
        """scripts/rootfs_check.py builds the image's filesystem, runs its
        CMD as its user in its own network namespace, and every check passes."""
        if not _rootfs_wanted():
            pytest.skip("the real image run takes minutes: set MOONTREK_ROOTFS=1 (it runs when CI=true unless MOONTREK_ROOTFS=0)")
        if sys.platform != "linux" or os.geteuid() != 0:
            pytest.skip("the image run needs root on Linux (debootstrap, chroot, namespaces)")
        missing = [t for t in ("debootstrap", "unshare", "nsenter", "chroot", "ip", "sysctl") if not shutil.which(t)]
        if missing and not shutil.which("apt-get"):
            pytest.skip(f"the image run needs {', '.join(missing)} (apt-get install debootstrap)")
        probe = subprocess.run(["unshare", "--net", "--mount", "--pid", "--fork", "true"], check=False, capture_output=True)
        if probe.returncode != 0:
            pytest.skip(f"namespaces are not available here: {probe.stderr.decode(errors='replace').strip()}")
        result = subprocess.run([sys.executable, str(SCRIPT), "--install-tools"], check=False, capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
        assert "OK: health, registration" in result.stdout
