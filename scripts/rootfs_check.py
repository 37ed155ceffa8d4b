#!/usr/bin/env python3
"""Build the Docker image's filesystem without a Docker engine and run it.

There is no Docker engine where moontrek is developed and tested, so nothing
else would ever run the Dockerfile. This script does what ``docker build`` and
``docker run`` would, from Debian's packages:

1. builds the base image's filesystem (``debian:SUITE-slim``) with
   ``debootstrap --variant=minbase`` from the Debian mirror the host's apt
   uses, cached as a tarball between runs;
2. performs the Dockerfile's instructions in a chroot, read from the
   Dockerfile itself (FROM, ENV, WORKDIR, COPY, RUN, USER, EXPOSE, VOLUME,
   HEALTHCHECK, CMD; anything else stops it), so the two cannot drift;
3. starts the CMD as the image's USER, as PID 1 of its own PID namespace, in
   a network namespace of its own with loopback up and unprivileged ports
   allowed (as Docker allows them), with a config folder bind-mounted at
   ``/app/config`` (the image's own ``config/config.py.docker``, as the README
   tells users to mount it);
4. checks ``/api/health``, one registration of a synthetic pair with a known
   homography, the image's HEALTHCHECK command, the request and registration
   lines in the log under the data volume, that the server is not root, and
   that SIGTERM (``docker stop``) stops it within Docker's 10 s grace period.

Every mount is made inside a private mount namespace that ends with its
process, so nothing stays mounted on the host even if the script is killed;
the script checks that before it deletes the tree. RUN steps use the host's
network, DNS and CA bundle, as ``docker build`` uses the daemon's.

Run as root on Linux with debootstrap, unshare, nsenter and chroot:

    sudo python3 scripts/rootfs_check.py            # cache: $MOONTREK_ROOTFS_CACHE
    python3 scripts/rootfs_check.py --parse-only    # just check the Dockerfile parses
"""

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path

__all__ = ["DockerfileError", "ImagePlan", "Instruction", "load_plan", "main", "parse_dockerfile"]

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = ("FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "VOLUME", "HEALTHCHECK", "CMD")
# The PATH Debian's images set; the Dockerfile's ENV lines build on it.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOL_PACKAGES = ("debootstrap", "util-linux", "iproute2", "procps", "tar")
DOCKER_STOP_GRACE = 10.0  # seconds docker stop waits before SIGKILL


class _Probed(typing.NamedTuple):
    """A registration the probe posts, and the keys of its findings."""

    algorithm: str
    prefix: str  # of <prefix>_status, <prefix>_ok, <prefix>_ms
    error_key: str
    answer_key: str  # the answer, when it is not a success
    label: str  # in failures


# SIFT, and SURF: ours runs on worker processes forked from a fork server,
# which must work as the image's user and as PID 1.
_PROBED = (
    _Probed("SIFT", "registration", "corner_error_px", "answer", "registration"),
    _Probed("SURF", "surf", "surf_corner_error_px", "surf_answer", "SURF registration"),
)


class DockerfileError(Exception):
    """The Dockerfile uses something this script does not understand."""


class CheckFailed(Exception):
    """The image, run for real, does not behave as it should."""


# --- Reading the Dockerfile --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def where(self):
        return f"Dockerfile line {self.line}: {self.keyword}"


def parse_dockerfile(text):
    """Split a Dockerfile into instructions: comments dropped, backslash
    continuations joined (comment lines inside a continuation are skipped,
    as Docker does)."""
    instructions, parts, start = [], [], None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not parts and (not stripped or stripped.startswith("#")):
            continue
        if parts and stripped.startswith("#"):
            continue
        if start is None:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        joined = " ".join(p for p in parts if p)
        keyword, _, args = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        parts, start = [], None
    if parts:
        raise DockerfileError(f"Dockerfile line {start}: the file ends inside a continuation")
    return instructions


def _expand(value, env):
    """Docker's $VAR and ${VAR} substitution (the forms the Dockerfile uses)."""
    if re.search(r"\$\{[^}]*[:][-+?]", value):
        raise DockerfileError(f"unsupported ${{VAR:-default}} form in {value!r}")
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _exec_form(args, where):
    try:
        argv = json.loads(args)
    except json.JSONDecodeError:
        argv = None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise DockerfileError(f"{where}: only the exec form [\"prog\", \"arg\", ...] is supported")
    return argv


@dataclasses.dataclass
class CopyStep:
    sources: list
    dest: str  # absolute, in the image


@dataclasses.dataclass
class RunStep:
    command: str
    env: dict
    workdir: str
    user: str


@dataclasses.dataclass
class ImagePlan:
    """What the Dockerfile asks for, in order, with ENV and WORKDIR resolved."""

    base: str
    suite: str
    steps: list  # CopyStep, RunStep and ("workdir", path) in order
    env: dict
    workdir: str
    user: str
    exposed: list
    volumes: list
    healthcheck: list  # argv run in the container
    cmd: list


def load_plan(dockerfile_text):
    """Interpret every instruction; raise DockerfileError on anything outside
    the supported subset, before anything is built."""
    instructions = parse_dockerfile(dockerfile_text)
    if not instructions or instructions[0].keyword != "FROM":
        raise DockerfileError("the Dockerfile must start with FROM")
    env = {"PATH": IMAGE_PATH}
    workdir, user = "/", "root"
    steps, exposed, volumes = [], [], []
    base = suite = healthcheck = cmd = None
    for ins in instructions:
        where = ins.where()
        if ins.keyword not in SUPPORTED:
            raise DockerfileError(f"{where}: not supported by scripts/rootfs_check.py (it knows {', '.join(SUPPORTED)})")
        if ins.args.startswith("--") and ins.keyword not in ("HEALTHCHECK",):
            raise DockerfileError(f"{where}: options ({ins.args.split()[0]}) are not supported")
        if ins.keyword == "FROM":
            if base is not None:
                raise DockerfileError(f"{where}: multi-stage builds are not supported")
            match = re.fullmatch(r"debian:(\w+)(-slim)?", ins.args)
            if not match:
                raise DockerfileError(f"{where}: the base must be debian:SUITE-slim (debootstrap rebuilds it), not {ins.args!r}")
            base, suite = ins.args, match.group(1)
        elif ins.keyword == "ENV":
            words = shlex.split(ins.args)
            if words and "=" not in words[0]:
                raise DockerfileError(f"{where}: use the ENV KEY=VALUE form")
            for word in words:
                key, eq, value = word.partition("=")
                if not eq or not re.fullmatch(r"[A-Za-z_]\w*", key):
                    raise DockerfileError(f"{where}: cannot read {word!r} as KEY=VALUE")
                env[key] = _expand(value, env)
        elif ins.keyword == "WORKDIR":
            path = _expand(ins.args, env)
            workdir = os.path.normpath(os.path.join(workdir, path))
            steps.append(("workdir", workdir))
        elif ins.keyword == "COPY":
            words = [_expand(w, env) for w in shlex.split(ins.args)]
            if ins.args.lstrip().startswith("[") or len(words) < 2:
                raise DockerfileError(f"{where}: use COPY SRC... DEST")
            *sources, dest = words
            for source in sources:
                if re.search(r"[*?\[]", source) or os.path.isabs(source) or ".." in Path(source).parts:
                    raise DockerfileError(f"{where}: source {source!r}: wildcards and paths outside the context are not supported")
            # A DEST ending in / (or several sources) is a folder.
            absolute = os.path.normpath(os.path.join(workdir, dest))
            if dest.endswith("/") or len(sources) > 1:
                absolute = absolute.rstrip("/") + "/"
            steps.append(CopyStep(sources, absolute))
        elif ins.keyword == "RUN":
            if ins.args.lstrip().startswith("["):
                raise DockerfileError(f"{where}: only the shell form of RUN is supported")
            steps.append(RunStep(ins.args, dict(env), workdir, user))
        elif ins.keyword == "USER":
            user = _expand(ins.args, env)
            if not re.fullmatch(r"[a-z_][a-z0-9_-]*", user):
                raise DockerfileError(f"{where}: USER must be a user name (no uid or :group)")
        elif ins.keyword == "EXPOSE":
            for word in _expand(ins.args, env).split():
                match = re.fullmatch(r"(\d+)(/tcp)?", word)
                if not match:
                    raise DockerfileError(f"{where}: {word!r}: only TCP ports are supported")
                exposed.append(int(match.group(1)))
        elif ins.keyword == "VOLUME":
            volumes.extend(_exec_form(ins.args, where) if ins.args.startswith("[") else ins.args.split())
        elif ins.keyword == "HEALTHCHECK":
            match = re.fullmatch(r"((?:--[a-z-]+=\S+\s+)*)CMD\s+(.+)", ins.args, re.DOTALL)
            if not match:
                raise DockerfileError(f"{where}: expected HEALTHCHECK [--option=value ...] CMD ...")
            for option in match.group(1).split():
                if option.split("=")[0] not in ("--interval", "--timeout", "--start-period", "--retries", "--start-interval"):
                    raise DockerfileError(f"{where}: unknown option {option}")
            command = match.group(2).strip()
            healthcheck = _exec_form(command, where) if command.startswith("[") else ["/bin/sh", "-c", command]
        elif ins.keyword == "CMD":
            cmd = _exec_form(ins.args, where)
    if cmd is None:
        raise DockerfileError("the Dockerfile has no CMD")
    return ImagePlan(base, suite, steps, env, workdir, user, exposed, volumes, healthcheck, cmd)


# --- .dockerignore ------------------------------------------------------------


def load_dockerignore(context):
    """Compiled .dockerignore patterns (the subset without ! and [...])."""
    path = context / ".dockerignore"
    patterns = []
    for line in path.read_text().splitlines() if path.exists() else []:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!") or "[" in line:
            raise DockerfileError(f".dockerignore: {line!r}: ! and [...] patterns are not supported")
        regex = ""
        for part in line.strip("/").split("/"):
            if part == "**":
                regex += "(?:[^/]+/)*"
            else:
                regex += "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in part) + "/"
        patterns.append(re.compile(regex.removesuffix("/")))
    return patterns


def ignored(relative, patterns):
    """Whether a context path, or a folder above it, matches a pattern."""
    parts = Path(relative).parts
    return any(p.fullmatch("/".join(parts[:i])) for p in patterns for i in range(1, len(parts) + 1))


# --- Running things in the tree -----------------------------------------------


def _run(argv, **kwargs):
    kwargs.setdefault("check", True)
    return subprocess.run(argv, **kwargs)  # noqa: PLW1510 (check defaults to True above)


def _namespaced(root, argv, *, env, workdir="/", uid=0, gid=0, net=False, build=False, binds=(), host_ca=None):
    """The command line that runs ``argv`` chrooted in ``root`` as Docker
    would: own mount and PID namespaces (``argv`` is PID 1), /proc, a small
    /dev, and for ``net`` a network namespace of its own with loopback up and
    unprivileged ports allowed. ``build`` adds the host's DNS and CA bundle."""
    r = shlex.quote(str(root))
    script = [
        "set -e",
        f"mount -t proc proc {r}/proc",
        f"mount -t tmpfs -o mode=755,nosuid dev {r}/dev",
        f"for n in null zero full random urandom tty; do touch {r}/dev/$n; mount --bind /dev/$n {r}/dev/$n; done",
        f"mkdir -p {r}/dev/shm {r}/dev/pts && mount -t tmpfs -o mode=1777,nosuid,nodev shm {r}/dev/shm",
        (f"ln -s /proc/self/fd {r}/dev/fd && ln -s /proc/self/fd/0 {r}/dev/stdin"
         f" && ln -s /proc/self/fd/1 {r}/dev/stdout && ln -s /proc/self/fd/2 {r}/dev/stderr"),
    ]
    if build:
        script.append(f"rm -f {r}/etc/resolv.conf && touch {r}/etc/resolv.conf && mount --bind /etc/resolv.conf {r}/etc/resolv.conf")
        if host_ca:
            script.append(f"mkdir -p {r}/run/rootfs-check && mount -t tmpfs tmp {r}/run/rootfs-check"
                          f" && touch {r}/run/rootfs-check/ca.crt && mount --bind {shlex.quote(host_ca)} {r}/run/rootfs-check/ca.crt")
    for source, target in binds:
        script.append(f"mkdir -p {r}{shlex.quote(target)} && mount --bind {shlex.quote(str(source))} {r}{shlex.quote(target)}")
    if net:
        script.append("ip link set lo up && sysctl -q -w net.ipv4.ip_unprivileged_port_start=0")
    user = [] if uid == 0 else [f"--userspec={uid}:{gid}", f"--groups={gid}"]
    inner = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
             "/bin/sh", "-c", 'cd -- "$0" && exec "$@"', workdir, *argv]
    script.append("exec chroot " + " ".join(shlex.quote(a) for a in [*user, str(root), *inner]))
    return ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", *(["--net"] if net else []),
            "--", "/bin/sh", "-c", "\n".join(script)]


def _passwd(root, name):
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2]), int(fields[3]), fields[5]
    raise CheckFailed(f"USER {name}: no such user in the image's /etc/passwd")


def _process_env(root, plan_env, user):
    uid, gid, home = _passwd(root, user)
    return uid, gid, {**plan_env, "HOME": home or "/", "HOSTNAME": "moontrek-rootfs"}


def _remove_tree(path):
    """rm -rf that never crosses into another file system (a bind mount
    that somehow survived), after the mount check has passed."""
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=False)


def mounts_under(root):
    """Mount points under ``root`` in the host's mount namespace."""
    prefix = str(Path(root).resolve())
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


# --- The base filesystem ----------------------------------------------------------


def apt_sources(suite, etc=Path("/etc/apt")):
    """The host apt's entries for ``suite`` (and -updates, -security), as
    (uri, suites, components) from deb822 .sources and one-line .list files."""
    entries = []
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
                for uri in fields.get("uris", []):
                    entries.append((uri, fields.get("suites", []), fields.get("components", [])))
    for path in [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]:
        for line in path.read_text().splitlines() if path.exists() else []:
            words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                entries.append((words[1], [words[2]], words[3:]))
    keep = [(uri, [s for s in suites if s == suite or s.startswith(suite + "-")], comps) for uri, suites, comps in entries]
    return [(uri, suites, comps) for uri, suites, comps in keep if suites]


def build_base(plan, cache, mirror, log):
    """A tarball of ``debian:SUITE-slim``'s filesystem, built once per cache."""
    arch = _run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    sources = apt_sources(plan.suite)
    if mirror is None:
        mains = [uri for uri, suites, _ in sources if plan.suite in suites]
        if not mains:
            raise CheckFailed(f"the host's apt has no entry for {plan.suite}: pass --mirror")
        mirror = mains[0]
    key = hashlib.sha256(json.dumps([plan.suite, arch, mirror, sources]).encode()).hexdigest()[:12]
    tarball = cache / f"debian-{plan.suite}-minbase-{arch}-{key}.tar"
    if tarball.exists():
        log(f"base: cached {tarball}")
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="base-", dir=cache))
    try:
        log(f"base: debootstrap --variant=minbase {plan.suite} from {mirror} (takes a few minutes)")
        # In a private mount namespace: debootstrap's own /proc and /sys
        # mounts cannot outlive it.
        _run(["unshare", "--mount", "--propagation", "private", "debootstrap", "--variant=minbase",
              f"--arch={arch}", plan.suite, str(staging / "root"), mirror],
             stdout=subprocess.DEVNULL)
        root = staging / "root"
        # Like Debian's Docker image: apt reads one deb822 file with the
        # release, its updates and security, and no package lists are kept.
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        sources = sources or [(mirror, [plan.suite], ["main"])]
        text = "\n".join(
            f"Types: deb\nURIs: {uri}\nSuites: {' '.join(suites)}\nComponents: {' '.join(comps or ['main'])}\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            for uri, suites, comps in sources
        )
        (root / "etc/apt/sources.list.d/debian.sources").write_text(text)
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        (root / "var/cache/apt/archives/partial").mkdir(parents=True)
        for lists in (root / "var/lib/apt/lists").glob("*"):
            if lists.is_file():
                lists.unlink()
        if mounts_under(root):
            raise CheckFailed(f"debootstrap left mounts under {root}")
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(staging / "base.tar"), "."])
        os.replace(staging / "base.tar", tarball)
    finally:
        if not mounts_under(staging):
            _remove_tree(staging)
    return tarball


# --- The image ------------------------------------------------------------------


def copy_into(root, context, step, patterns):
    """COPY: files land owned by root with their modes; folders copy their
    contents; .dockerignore'd paths are left out."""
    dest = step.dest
    for source in step.sources:
        path = context / source
        if not path.exists() or ignored(source, patterns):
            raise CheckFailed(f"COPY {source}: not in the build context (or .dockerignore'd)")
        if path.is_dir():
            target = root / dest.lstrip("/")
            for item in sorted(path.rglob("*")):
                relative = item.relative_to(context)
                if ignored(relative.as_posix(), patterns):
                    continue
                out = target / item.relative_to(path)
                if item.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                else:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(item, out)
                os.lchown(out, 0, 0)
        else:
            target = root / (dest.lstrip("/") + path.name if dest.endswith("/") else dest.lstrip("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            os.lchown(target, 0, 0)


def _step_digest(step, context, patterns):
    """What a layer depends on: the instruction, and for COPY the copied
    files' names, modes and contents."""
    if not isinstance(step, CopyStep):
        return json.dumps(dataclasses.asdict(step) if dataclasses.is_dataclass(step) else step, sort_keys=True)
    digest = hashlib.sha256(json.dumps([step.sources, step.dest]).encode())
    for source in step.sources:
        path = context / source
        for item in sorted([path, *path.rglob("*")] if path.is_dir() else [path]):
            relative = item.relative_to(context).as_posix()
            if item.is_file() and not ignored(relative, patterns):
                digest.update(f"{relative}\0{item.stat().st_mode:o}\0".encode())
                digest.update(hashlib.sha256(item.read_bytes()).digest())
    return digest.hexdigest()


def build_image(plan, root, context, tarball, host_ca, log, layers=None):
    """Unpack the base and perform the steps. With ``layers`` (a folder),
    the tree after each RUN is kept there as a tarball keyed by everything
    before it, as Docker's build cache does, and the latest one that still
    matches is unpacked instead of redoing the steps up to it."""
    patterns = load_dockerignore(context)
    keys, key = [], tarball.name
    for step in plan.steps:
        key = hashlib.sha256((key + _step_digest(step, context, patterns)).encode()).hexdigest()[:20]
        keys.append(key)
    start, snapshot = 0, tarball
    if layers:
        layers.mkdir(parents=True, exist_ok=True)
        for index in reversed(range(len(plan.steps))):
            if isinstance(plan.steps[index], RunStep) and (layers / f"{keys[index]}.tar").exists():
                start, snapshot = index + 1, layers / f"{keys[index]}.tar"
                break
    _run(["tar", "--numeric-owner", "-C", str(root), "-xpf", str(snapshot)])
    log(f"FROM {plan.base}: unpacked into {root}"
        + (f" (layer cache: the first {start} steps from {snapshot.name})" if start else ""))
    for index, step in enumerate(plan.steps[start:], start):
        if isinstance(step, tuple):  # WORKDIR: Docker creates it
            (root / step[1].lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif isinstance(step, CopyStep):
            log(f"COPY {' '.join(step.sources)} {step.dest}")
            copy_into(root, context, step, patterns)
        else:
            log(f"RUN {step.command}")
            uid, gid, env = _process_env(root, step.env, step.user)
            if host_ca:
                env["PIP_CERT"] = "/run/rootfs-check/ca.crt"
            started = time.monotonic()
            result = subprocess.run(
                _namespaced(root, ["/bin/sh", "-c", step.command], env=env, workdir=step.workdir,
                            uid=uid, gid=gid, build=True, host_ca=host_ca),
                check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            if result.returncode != 0:
                raise CheckFailed(f"RUN failed with exit code {result.returncode}:\n{result.stdout[-4000:]}")
            log(f"  done in {time.monotonic() - started:.0f} s")
            if layers:
                if mounts_under(root):
                    raise CheckFailed(f"RUN left mounts under {root}")
                partial = layers / f"{keys[index]}.tar.partial"
                _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."])
                os.replace(partial, layers / f"{keys[index]}.tar")
    if layers:  # keep only this build's layers
        for old in layers.glob("*.tar"):
            if old.stem not in keys:
                old.unlink()


# --- Running the image ----------------------------------------------------------


def _probe(port, pair_dir, timeout):
    """Run inside the container's network namespace (by nsenter): wait for
    /api/health, then register the pair; print what was found as JSON."""
    import http.client

    sys.path.insert(0, str(ROOT))
    import numpy as np

    from moontrek.registration.geometry import corner_error

    def request(method, path, body=None, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    deadline = time.monotonic() + timeout
    while True:
        try:
            status, raw = request("GET", "/api/health")
            if status == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            print(json.dumps({"error": f"/api/health did not answer 200 within {timeout:.0f} s"}))
            return 1
        time.sleep(0.25)
    health = json.loads(raw)
    boundary = "rootfs-check-boundary"
    body = b""
    for field in ("user-file", "model-file"):
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{field}.png"\r\n'
                 "Content-Type: image/png\r\n\r\n").encode() + (pair_dir / f"{field}.png").read_bytes() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    expected = np.array(json.loads((pair_dir / "expected.json").read_text()))
    width, height = json.loads((pair_dir / "size.json").read_text())
    result = {"health": health}
    for probed in _PROBED:
        started = time.monotonic()
        status, raw = request("POST", f"/api/registrar/{probed.algorithm}", body,
                              {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        answer = json.loads(raw)
        result.update({f"{probed.prefix}_status": status, f"{probed.prefix}_ok": answer.get("ok"),
                       f"{probed.prefix}_ms": round(1000 * (time.monotonic() - started))})
        if status == 200 and answer.get("ok"):
            found = np.array(answer["payload"]["homography_matrix"], float)
            result[probed.error_key] = round(float(corner_error(found, expected, width, height)), 3)
        else:
            result[probed.answer_key] = answer
    print(json.dumps(result))
    return 0


def make_pair(folder):
    """A synthetic pair with a known answer, made on the host by moontrek's
    own generator (the same the tests use)."""
    sys.path.insert(0, str(ROOT))
    from moontrek.synthetic import encode, render_moon
    from moontrek.synthetic import make_pair as warp

    model = render_moon(800, seed=11)
    pair = warp(model, angle=25.0, scale=0.75, shift=(12.0, -8.0), perspective=(0.04, -0.03))
    (folder / "user-file.png").write_bytes(encode(pair.user))
    (folder / "model-file.png").write_bytes(encode(pair.model))
    (folder / "expected.json").write_text(json.dumps(pair.expected.tolist()))
    (folder / "size.json").write_text(json.dumps([pair.user.shape[1], pair.user.shape[0]]))


def _children(pid):
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _wait_for_namespaces(server, timeout=30.0):
    """Wait until ``unshare`` has forked the container's PID 1: until then
    its /proc/PID/ns/net may still be the host's (unshare(2) not yet
    called), and a probe entering it would knock on the host's port for the
    whole timeout (about one run in six did)."""
    deadline = time.monotonic() + timeout
    while not _children(server.pid):
        if server.poll() is not None or time.monotonic() > deadline:
            raise CheckFailed(f"the container did not start (unshare exited {server.poll()})")
        time.sleep(0.02)
    if os.readlink(f"/proc/{server.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
        raise CheckFailed("the container shares the host's network namespace")


def _exercise(plan, root, server, port, pair_dir, env, uid, gid, start_timeout, findings):
    """Probe the running server from inside its network namespace, run the
    HEALTHCHECK there, then stop it as docker stop does."""
    netns = f"--net=/proc/{server.pid}/ns/net"
    _wait_for_namespaces(server)
    probe = subprocess.run(
        ["nsenter", netns, "--", sys.executable, str(Path(__file__).resolve()), "_probe",
         "--port", str(port), "--pair", str(pair_dir), "--timeout", str(start_timeout)],
        check=False, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        findings.update(json.loads(probe.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        raise CheckFailed(f"the probe failed:\n{probe.stdout}{probe.stderr}") from None
    if "error" in findings:
        raise CheckFailed(findings["error"])
    pids = _children(server.pid)  # the CMD: PID 1 of the container's PID namespace
    if pids:
        status = Path(f"/proc/{pids[0]}/status").read_text()
        findings["server_uid"] = int(re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1))
    if plan.healthcheck:
        health = subprocess.run(
            ["nsenter", netns, "--", *_namespaced(root, plan.healthcheck, env=env, workdir=plan.workdir, uid=uid, gid=gid)],
            check=False, capture_output=True, text=True, timeout=60,
        )
        findings["healthcheck_exit"] = health.returncode
        findings["healthcheck_output"] = (health.stdout + health.stderr)[-2000:]
    # docker stop: SIGTERM to PID 1, SIGKILL after the grace period.
    started = time.monotonic()
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    try:
        findings["exit_code"] = server.wait(timeout=DOCKER_STOP_GRACE)
        findings["stop_seconds"] = round(time.monotonic() - started, 2)
    except subprocess.TimeoutExpired:
        findings["exit_code"] = None


def run_image(plan, root, context, scratch, log, start_timeout=120.0):
    """Start the CMD as the USER in its own namespaces with the config folder
    mounted; check it; stop it as docker stop would. Returns the findings."""
    if not plan.exposed:
        raise CheckFailed("the Dockerfile EXPOSEs no port")
    port = plan.exposed[0]
    uid, gid, env = _process_env(root, plan.env, plan.user)
    config_dir = scratch / "config"
    config_dir.mkdir()
    shutil.copy(context / "config" / "config.py.docker", config_dir / "config.py")
    pair_dir = scratch / "pair"
    pair_dir.mkdir()
    make_pair(pair_dir)
    argv = _namespaced(root, plan.cmd, env=env, workdir=plan.workdir, uid=uid, gid=gid, net=True,
                       binds=[(config_dir, "/app/config")])
    log(f"CMD {' '.join(plan.cmd)} as {plan.user} (uid {uid}), own network namespace, {config_dir} at /app/config")
    findings = {}
    with open(scratch / "console.log", "w+b") as console:
        server = subprocess.Popen(argv, stdout=console, stderr=subprocess.STDOUT)
        try:
            _exercise(plan, root, server, port, pair_dir, env, uid, gid, start_timeout, findings)
        except CheckFailed as exc:
            console.seek(0)
            raise CheckFailed(f"{exc}\nserver console:\n{console.read().decode(errors='replace')[-3000:]}") from None
        finally:
            if server.poll() is None:
                for pid in _children(server.pid):
                    os.kill(pid, signal.SIGKILL)
                server.kill()
                server.wait()
        console.seek(0)
        findings["console"] = console.read().decode(errors="replace")
    return findings


def verify(plan, root, findings, strict_console=False):
    """Turn the findings into a list of failures (empty: all good)."""
    failures = []
    uid, _, _ = _passwd(root, plan.user)
    if findings.get("health", {}).get("ok") is not True:
        failures.append(f"/api/health: {findings.get('health')}")
    for probed in _PROBED:
        status = findings.get(f"{probed.prefix}_status")
        if status != 200 or findings.get(f"{probed.prefix}_ok") is not True:
            failures.append(f"{probed.label} answered {status}: {findings.get(probed.answer_key)}")
        elif findings.get(probed.error_key, 1e9) > 3.0:
            failures.append(f"{probed.label} corner error {findings[probed.error_key]} px (> 3 px)")
    console = findings.get("console", "")
    if "our SURF runs on" not in console or "SURF worker processes cannot start" in console:
        failures.append(f"SURF's worker processes did not start in the image; console:\n{console[-3000:]}")
    if uid == 0:
        failures.append(f"USER {plan.user} is root")
    if findings.get("server_uid") != uid:
        failures.append(f"the server runs as uid {findings.get('server_uid')}, not {plan.user} ({uid})")
    if plan.healthcheck and findings.get("healthcheck_exit") != 0:
        failures.append(f"HEALTHCHECK exited {findings.get('healthcheck_exit')}: {findings.get('healthcheck_output')}")
    if findings.get("exit_code") is None:
        failures.append(f"SIGTERM did not stop the server within {DOCKER_STOP_GRACE:.0f} s (docker stop would SIGKILL it)")
    elif findings["exit_code"] != 0:
        failures.append(f"the server exited with code {findings['exit_code']} after SIGTERM")
    log_path = root / "app" / "data" / "moontrek.log"
    if not log_path.is_file():
        failures.append(f"no log at /app/data/moontrek.log (the data volume); console:\n{console[-3000:]}")
    else:
        text = log_path.read_text(errors="replace")
        findings["log_lines"] = len(text.splitlines())
        for needle in ("GET /api/health 200", *(f"POST /api/registrar/{p.algorithm} 200" for p in _PROBED)):
            if needle not in text:
                failures.append(f"/app/data/moontrek.log lacks {needle!r}")
        if log_path.stat().st_uid != uid:
            failures.append(f"/app/data/moontrek.log is owned by uid {log_path.stat().st_uid}, not {plan.user}")
    findings["console_tracebacks"] = console.count("Traceback (most recent call last)")
    if findings["console_tracebacks"] and strict_console:
        failures.append(f"the server's console has {findings['console_tracebacks']} traceback(s):\n{console[-3000:]}")
    return failures


def console_problems(console):
    """One line per traceback in the console: its message and where."""
    problems = []
    for block in console.split("Traceback (most recent call last)")[1:]:
        lines = block.splitlines()
        error = next((line for line in lines if re.match(r"^\w+(Error|Exception):", line)), "?")
        message = next((line for line in lines if line.startswith("Message: ")), "")
        problems.append(f"{error} {message}".strip())
    return problems


# --- The command ------------------------------------------------------------------


def make_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dockerfile", default=str(ROOT / "Dockerfile"))
    parser.add_argument("--context", default=str(ROOT), help="build context (default: the repository)")
    parser.add_argument("--cache", default=os.environ.get("MOONTREK_ROOTFS_CACHE")
                        or str(Path.home() / ".cache" / "moontrek-rootfs"),
                        help="where the debootstrap tarball is kept between runs ($MOONTREK_ROOTFS_CACHE)")
    parser.add_argument("--workdir", help="folder for the tree (default: a new one under /var/tmp)")
    parser.add_argument("--mirror", help="Debian mirror (default: the one the host's apt uses)")
    parser.add_argument("--host-ca", default="/etc/ssl/certs/ca-certificates.crt",
                        help="CA bundle RUN steps trust for pip, as the build host does ('' for none)")
    parser.add_argument("--install-tools", action="store_true",
                        help="apt-get install debootstrap (and the rest) when missing")
    parser.add_argument("--layer-cache", action="store_true",
                        help="also cache the tree after each RUN (as Docker's build cache), for fast reruns")
    parser.add_argument("--strict-console", action="store_true",
                        help="fail when the server's console shows a traceback (a logging error, say)")
    parser.add_argument("--keep", action="store_true", help="keep the built tree")
    parser.add_argument("--parse-only", action="store_true", help="only read the Dockerfile and print the plan")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_probe"]:
        probe = argparse.ArgumentParser()
        probe.add_argument("_probe")
        probe.add_argument("--port", type=int)
        probe.add_argument("--pair", type=Path)
        probe.add_argument("--timeout", type=float)
        args = probe.parse_args(argv)
        return _probe(args.port, args.pair, args.timeout)
    args = make_parser().parse_args(argv)
    began = time.monotonic()

    def log(message):
        print(f"[rootfs-check {time.monotonic() - began:6.1f}s] {message}", flush=True)

    try:
        plan = load_plan(Path(args.dockerfile).read_text())
    except DockerfileError as exc:
        print(f"rootfs-check: FAILED: {exc}", file=sys.stderr)
        return 2
    if args.parse_only:
        print(json.dumps(dataclasses.asdict(plan), indent=2, default=str))
        return 0
    tools = ("debootstrap", "unshare", "nsenter", "chroot", "ip", "sysctl", "tar")
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing and args.install_tools and os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"apt-get install {' '.join(TOOL_PACKAGES)}")
        quiet = {"stdout": subprocess.DEVNULL, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
        _run(["apt-get", "update", "-qq"], **quiet)
        _run(["apt-get", "install", "-y", "-qq", *TOOL_PACKAGES], **quiet)
        missing = [tool for tool in tools if not shutil.which(tool)]
    if missing or os.geteuid() != 0:
        print(f"rootfs-check: FAILED: needs root and {', '.join(missing) or 'nothing else'}"
              f" (apt-get install {' '.join(TOOL_PACKAGES)}, or pass --install-tools)", file=sys.stderr)
        return 2

    context = Path(args.context).resolve()
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="moontrek-rootfs-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "root"
    host_ca = args.host_ca if args.host_ca and Path(args.host_ca).is_file() else None
    status = 1
    try:
        tarball = build_base(plan, Path(args.cache), args.mirror, log)
        if root.exists():
            if mounts_under(root):
                raise CheckFailed(f"{root} has mounts; refusing to reuse it")
            _remove_tree(root)
        root.mkdir()
        layers = Path(args.cache) / "layers" if args.layer_cache else None
        build_image(plan, root, context, tarball, host_ca, log, layers)
        log("built; starting the image")
        scratch = work / "run"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        findings = run_image(plan, root, context, scratch, log)
        failures = verify(plan, root, findings, args.strict_console)
        leftover = mounts_under(work)
        if leftover:
            failures.append(f"mounts left on the host: {leftover}")
        summary = {k: v for k, v in findings.items() if k not in ("console", "healthcheck_output")}
        log("findings: " + json.dumps(summary))
        for problem in console_problems(findings.get("console", "")):
            log(f"WARNING: traceback in the server's console: {problem}")
        if failures:
            print("rootfs-check: FAILED:\n  - " + "\n  - ".join(failures), file=sys.stderr)
            print("server console:\n" + findings.get("console", "")[-3000:], file=sys.stderr)
        else:
            log(f"OK: health, registration ({findings['corner_error_px']} px corner error; SURF on worker processes "
                f"{findings['surf_corner_error_px']} px), HEALTHCHECK, "
                f"log in /app/data, uid {findings['server_uid']}, stopped by SIGTERM in {findings['stop_seconds']} s; "
                f"total {time.monotonic() - began:.0f} s")
            status = 0
    except (CheckFailed, subprocess.CalledProcessError, OSError) as exc:
        print(f"rootfs-check: FAILED: {exc}", file=sys.stderr)
    finally:
        leftover = mounts_under(work)
        if leftover:
            print(f"rootfs-check: mounts remain under {work}, not deleting it: {leftover}", file=sys.stderr)
            status = 1
        elif not args.keep:
            _remove_tree(work)
        elif args.keep:
            log(f"kept {work}")
    return status


if __name__ == "__main__":
    sys.exit(main())
