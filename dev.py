#!/usr/bin/env python3
"""modforge's two entry points, each installing what it needs into .venv/.

    python3 dev.py demo   # generate a module from the default answers and show it running
    python3 dev.py test   # run the whole test suite (what CI runs)

    python3 dev.py demo liftos   # the same for a Lift OS module: store an event, find it again

Needs only Python 3.11+ and git.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import venv
from pathlib import Path

if sys.version_info < (3, 11):  # noqa: UP036 - the one check that must run on old interpreters too
    sys.exit("modforge needs Python 3.11 or newer")

REPO = Path(__file__).resolve().parent
VENV = REPO / ".venv"
BIN = VENV / "bin"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def ensure_venv() -> None:
    """Create .venv with modforge's dependencies and dev tools; skip when up to date.

    modforge is a template, not a package: only its dependency lists are installed.
    """
    stamp = VENV / ".modforge-installed"
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    say(f"installing modforge and its test tools into {VENV}")
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    import tomllib  # after the version check: 3.11+ only

    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    subprocess.run([*pip, *project["dependencies"], *project["optional-dependencies"]["dev"]], check=True)
    stamp.write_text(digest)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: object = None, token: str | None = None) -> tuple[int, dict[str, str], object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def demo(platform: str = "blux") -> int:
    ensure_venv()
    out = REPO / ".demo" / f"my-{platform}-module"
    shutil.rmtree(out.parent, ignore_errors=True)
    say(f"generating a {platform} module from the default answers into {out}")
    subprocess.run(
        [
            *(str(BIN / "copier"), "copy", "--trust", "--defaults", "--vcs-ref", "HEAD", "--quiet"),
            *("-d", f"platform={platform}"),
            *(str(REPO), str(out)),
        ],
        check=True,
    )
    module_venv = out.parent / "venv"
    say("installing the generated module into its own environment")
    venv.EnvBuilder(with_pip=True).create(module_venv)
    subprocess.run(
        [
            str(module_venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-e",
            str(out),
        ],
        check=True,
    )
    name = f"my-{platform}-module"
    prefix = name.replace("-", "_").upper() + "_"
    port = free_port()
    if platform == "liftos":  # configured as the Lift OS guide names it
        env = {**os.environ, "JWT_SECRET_KEY": secrets.token_urlsafe(48), "MODULE_PORT": str(port)}
    else:
        env = {**os.environ, f"{prefix}JWT_SECRET": secrets.token_urlsafe(48), f"{prefix}PORT": str(port)}
    cli = str(module_venv / "bin" / name)
    base = f"http://127.0.0.1:{port}"
    say(f"starting `{name} serve` on {base}")
    server = subprocess.Popen([cli, "serve"], cwd=out, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, health = http("GET", f"{base}/health")
                if status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                say("the module did not come up")
                return 1
            time.sleep(0.2)
        say(f"GET /health -> {status} {json.dumps(health)}")
        token = subprocess.run(
            [cli, "token", "issue", "--subject", "demo"], cwd=out, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        if platform == "liftos":
            return memory_flow(base, token)
        body = {"analysis_type": "statistical", "data": {"values": [1, 2, 3, 4, 5]}}
        status, headers, accepted = http("POST", f"{base}/v1/analyze", body, token)
        say(f"POST /v1/analyze {json.dumps(body)} -> {status} {json.dumps(accepted)}")
        if status != 202:
            return 1
        location = headers.get("location") or headers.get("Location")
        for _ in range(100):
            status, _, task = http("GET", f"{base}{location}", token=token)
            if isinstance(task, dict) and task.get("status") in {"succeeded", "failed", "cancelled"}:
                break
            time.sleep(0.05)
        say(f"GET {location} -> {status} {json.dumps(task)}")
        return 0 if isinstance(task, dict) and task.get("status") == "succeeded" else 1
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        say(f"stopped the module; the project stays in {out}")


def memory_flow(base: str, token: str) -> int:
    """Store an event in the module's KSE memory, then find it by keyword search."""
    event = {
        "key": "evt-1",
        "memory_type": "analytics_data",
        "value": {"event_type": "login", "note": "signed in from Berlin"},
        "context": {"org_id": "acme", "user_id": "u1"},
    }
    status, _, stored = http("POST", f"{base}/v1/memory", event, token)
    say(f"POST /v1/memory {json.dumps(event)} -> {status} {json.dumps(stored)}")
    query = {"query": "Berlin", "context": {"org_id": "acme"}}
    status, _, found = http("POST", f"{base}/v1/memory/search", query, token)
    say(f"POST /v1/memory/search {json.dumps(query)} -> {status} {json.dumps(found)}")
    hits = found.get("results", []) if isinstance(found, dict) else []
    return 0 if any(hit.get("key") == "evt-1" for hit in hits) else 1


# The harness creates tens of thousands of small files (the clones Copier makes for
# every render and update, rendered projects, their SQLite files and fsyncs). On a
# disk-backed /tmp that is most of an upgrade test's system time, so the run's
# scratch space goes to a tmpfs when the machine has one with room to spare.
SCRATCH_TMPFS = Path("/dev/shm")
SCRATCH_MIN_FREE = 4 * 1024**3  # one run peaks near 0.2 GiB; leave the machine its memory


def tmpfs_scratch() -> Path | None:
    """A fresh private directory on a tmpfs, or None to keep the default temp dir."""
    if "TMPDIR" in os.environ:
        return None  # the caller chose where scratch files go
    try:
        mounts = {f[1]: f[2] for f in (line.split() for line in Path("/proc/mounts").read_text().splitlines())}
        free = os.statvfs(SCRATCH_TMPFS)
    except OSError:
        return None  # not Linux, or no /dev/shm
    if mounts.get("/tmp") == "tmpfs" or mounts.get(str(SCRATCH_TMPFS)) != "tmpfs":
        return None  # /tmp is already in memory, or there is no tmpfs to use
    if free.f_bavail * free.f_frsize < SCRATCH_MIN_FREE:
        return None
    return Path(tempfile.mkdtemp(prefix="modforge-tests-", dir=SCRATCH_TMPFS))


def test(args: list[str]) -> int:
    ensure_venv()
    scratch = tmpfs_scratch()
    env = dict(os.environ)
    if scratch is not None:
        env["TMPDIR"] = str(scratch)
        say(f"scratch files in {scratch} (tmpfs; removed after a passing run)")
    code = 1
    try:
        code = subprocess.run([str(BIN / "python"), "-m", "pytest", *args], cwd=REPO, env=env, check=False).returncode
    finally:
        if scratch is not None and code == 0:
            shutil.rmtree(scratch, ignore_errors=True)
        elif scratch is not None:
            say(f"scratch files kept for inspection in {scratch} (they hold memory until removed)")
    if code == 5:
        print("pytest collected no tests: treating that as a failure", file=sys.stderr)
        return 1
    return code


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"demo", "test"}:
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "test":
        return test(sys.argv[2:])
    platform = sys.argv[2] if len(sys.argv) > 2 else "blux"
    if platform not in {"blux", "liftos"} or len(sys.argv) > 3:
        print(__doc__, file=sys.stderr)
        return 2
    return demo(platform)


if __name__ == "__main__":
    sys.exit(main())
