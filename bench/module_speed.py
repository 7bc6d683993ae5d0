#!/usr/bin/env python3
"""Speed of a generated module against a bare FastAPI app, measured in one run.

    .venv/bin/python bench/module_speed.py [--duration 10] [--connections 64] [--tasks 2000]

Renders the template with its defaults (committed HEAD), starts the module with
its own ``serve`` command (uvicorn, its full middleware stack, authentication as
the default answers say) and a bare FastAPI app with only ``GET /health`` under
the same uvicorn settings, then prints:

  * /health requests per second, module and bare, and their ratio (target >= 0.85)
  * authenticated POST /v1/analyze requests per second, ratio to bare /health (target >= 0.5)
  * the same POST to the bare app, which only validates the body and answers 202:
    the framework's own floor for a submission, as context for the ratio above
  * each submission round's rate and ratio, the share of its tasks the module ran
    within it, and how long it then took to run the rest
  * the module's CPU time per task, accepted and run, against the bare app's per
    /health request, and split into accepting and running (see below)
  * the same flood against a module with its default MAX_QUEUED_TASKS: submissions
    accepted and refused per second once the queue is full
  * end-to-end task throughput: submit N tasks, then read every result, twice: with
    clients long-polling each task (``GET /v1/tasks/{id}?wait=``), and reading once
    /health says all are done (the module's own pace)
  * start-up time from process start to /ready answering 200
  * idle CPU over 10 s (utime+stime from /proc/<pid>/stat) and RSS (VmRSS)

The four rates are taken in turn, once per round (medians over the rounds), so
drift between rounds hits them alike. The module runs every task a submission
round queued before the next round starts: each submission round starts from
an idle module, as each bare round starts from an idle app, and the bare app is
not measured while the module works through a backlog on the same CPU.

Why the CPU split: the module runs tasks while it accepts more, so a round's
rate also pays for the runs it did meanwhile, a share set by scheduling. A task
that gets cheaper to run gets run sooner, and the round's rate drops (measured:
docs/performance.md). Running is timed on the backlog after each round, when
nothing else runs; accepting is the round's CPU minus the runs within it.

The servers run on CPU 0 and the load generator on CPU 1 (taskset, when there
are two CPUs). The load generator is ``wrk`` when it is on PATH, else a small
asyncio keep-alive HTTP/1.1 client in this file (said so in the output; a
Python client may saturate before the server does, which understates both
rates but still compares them under the same load).

The module's dependencies are installed once into .cache/bench-env-<hash>
(keyed by the generated pyproject's dependency list); the module itself runs
from the rendered tree via PYTHONPATH, so nothing is built per run.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"
SECRET = "bench-only-secret-" + "b" * 64
LONG_POLL_SECONDS = 10
BODY = json.dumps({"analysis_type": "statistical", "data": {"values": [1, 2, 3, 4, 5, 6, 7, 8]}})
CLK_TCK = os.sysconf("SC_CLK_TCK")

BARE_APP = """
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, Field

app = FastAPI()


@app.get("/health")
async def health():
    return {"status": "ok"}


# The framework's own floor for a submission: the same body through a pydantic
# model, one async header dependency, a 202 with a Location; no work at all.
class Values(BaseModel):
    values: list[float] = Field(min_length=1)


class Analyze(BaseModel):
    analysis_type: Literal["statistical", "trend"]
    data: Values


class Accepted(BaseModel):
    task_id: str
    status: str


async def caller(authorization: Annotated[str | None, Header()] = None) -> str:
    if not authorization:
        raise HTTPException(401, "a bearer token is required")
    return authorization


@app.post("/v1/analyze", status_code=202, response_model=Accepted)
async def analyze(body: Analyze, response: Response, who: Annotated[str, Depends(caller)]) -> Accepted:
    response.headers["Location"] = "/v1/tasks/0"
    return Accepted(task_id="0", status="queued")
"""


# Setup ------------------------------------------------------------------------
def render(dst: Path) -> dict[str, str]:
    """Render the last commit (copier would include uncommitted edits of the work tree)."""
    import copier

    snapshot = dst.parent / "template-head"
    snapshot.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(snapshot)], input=archive.stdout, check=True)
    git = ["git", "-C", str(snapshot), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], check=True)
    copier.run_copy(str(snapshot), str(dst), defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True)
    answers = (dst / ".copier-answers.yml").read_text(encoding="utf-8")
    found = dict(re.findall(r"^(module_name|package_name|env_prefix): (\S+)$", answers, re.M))
    if "env_prefix" not in found:
        found["env_prefix"] = found["package_name"].upper() + "_"
    return found


def bench_env(project: Path) -> Path:
    """A venv with the module's runtime dependencies (created once, then reused)."""
    deps = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    key = hashlib.sha256(json.dumps(sorted(deps)).encode()).hexdigest()[:16]
    env = CACHE / f"bench-env-{key}"
    python = env / "bin" / "python"
    if not python.exists():
        print(f"creating {env} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *deps], check=True, stdout=subprocess.DEVNULL)
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def get(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> float:
    start = time.perf_counter()
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before {url} answered")
        try:
            if get(url) == 200:
                return time.perf_counter() - start
        except OSError:
            pass
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"{url} not ready after {timeout} s")
        time.sleep(0.005)


@contextmanager
def server(command: list[str], env: dict[str, str], ready_url: str) -> Iterator[tuple[int, float]]:
    """Start a server pinned to CPU 0; yield (pid, seconds until ready_url answered 200)."""
    # Logs go to a file: an unread pipe fills up and stalls the server mid-benchmark.
    log = Path(env.get("BENCH_LOG", os.devnull))
    with log.open("ab") as sink:
        proc = subprocess.Popen([*pinned(0), *command], env=env, stdout=sink, stderr=sink)
    try:
        startup = wait_ready(ready_url, proc)
        yield proc.pid, startup
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.returncode not in (0, -15):
            tail = log.read_bytes()[-2000:].decode(errors="replace") if log.is_file() else ""
            print(f"  (server exited {proc.returncode}: {tail})")


def module_health(port: int) -> dict[str, Any]:
    """The module's /health answer (task counts included)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        health: dict[str, Any] = json.loads(response.read())
    return health


def idle(health: dict[str, Any]) -> bool:
    """Nothing queued or running, by the module's /health answer."""
    return bool(health["active_tasks"] == 0 and health["queued_tasks"] == 0)


def in_flight(port: int) -> int:
    """Tasks queued or running, by the module's /health answer."""
    health = module_health(port)
    return int(health["active_tasks"]) + int(health["queued_tasks"])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


# Load generation ---------------------------------------------------------------
def wrk_rate(url: str, duration: float, connections: int, lua: Path | None, workdir: Path) -> tuple[float, int]:
    """(requests per second, non-2xx answers) from wrk."""
    command = [*pinned(1), "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", url]
    if lua is not None:
        command[len(pinned(1)) + 1 : len(pinned(1)) + 1] = ["-s", str(lua)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=workdir).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rate, int(bad.group(1)) if bad else 0


class Conn:
    """One keep-alive HTTP/1.1 connection (enough HTTP for these servers' answers)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    def close(self) -> None:
        self.writer.close()


def raw_request(method: str, path: str, token: str | None, body: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    data = (body or "").encode()
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def python_rate(port: int, raw: bytes, duration: float, connections: int) -> tuple[float, int]:
    done = bad = 0
    stop = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal done, bad
        conn = await Conn.open(port)
        try:
            while time.perf_counter() < stop:
                status, _, _ = await conn.request(raw)
                done += 1
                bad += not 200 <= status < 400
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return done / (time.perf_counter() - start), bad


def rate(
    port: int, path: str, duration: float, connections: int, token: str | None, workdir: Path
) -> tuple[float, int]:
    post = path == "/v1/analyze"
    if shutil.which("wrk"):
        lua = None
        if post or token:
            lua = workdir / f"{path.strip('/').replace('/', '_')}.lua"
            lua.write_text(
                textwrap.dedent(
                    f"""\
                    wrk.method = "{"POST" if post else "GET"}"
                    wrk.headers["Content-Type"] = "application/json"
                    {f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""}
                    {f"wrk.body = [[{BODY}]]" if post else ""}
                    """
                )
            )
        return wrk_rate(f"http://127.0.0.1:{port}{path}", duration, connections, lua, workdir)
    raw = raw_request("POST" if post else "GET", path, token, BODY if post else None)
    return asyncio.run(python_rate(port, raw, duration, connections))


async def task_throughput(port: int, token: str | None, tasks: int, connections: int, *, wait: bool) -> float:
    """Tasks per second from the first submission until every result was read back.

    ``wait``: each reader asks for its next task with a long poll (``?wait=``), which
    the module answers when the task has finished, as a client waiting for its
    result does. Otherwise one connection watches /health until nothing is queued
    or running, then the readers read every result once: the module's own pace.
    """
    submit = raw_request("POST", "/v1/analyze", token, BODY)
    pending = list(range(tasks))
    locations: list[str] = []
    start = time.perf_counter()

    async def submitter() -> None:
        conn = await Conn.open(port)
        try:
            while pending:
                pending.pop()
                status, headers, body = await conn.request(submit)
                if status != 202:
                    raise SystemExit(f"submission answered {status}: {body[:300]!r}")
                locations.append(headers["location"])
        finally:
            conn.close()

    await asyncio.gather(*(submitter() for _ in range(connections)))
    if not wait:
        conn = await Conn.open(port)
        try:
            while True:
                _, _, body = await conn.request(raw_request("GET", "/health", None))
                health = json.loads(body)
                if idle(health):
                    break
                await asyncio.sleep(0.005)
        finally:
            conn.close()
    unread = list(locations)

    async def reader() -> None:
        conn = await Conn.open(port)
        try:
            while unread:
                location = unread.pop()
                while True:
                    target = f"{location}?wait={LONG_POLL_SECONDS}" if wait else location
                    status, _, body = await conn.request(raw_request("GET", target, token))
                    if status != 200:
                        raise SystemExit(f"GET {location} answered {status}: {body[:300]!r}")
                    state = json.loads(body)["status"]
                    if state in ("succeeded", "failed", "cancelled"):
                        if state != "succeeded":
                            raise SystemExit(f"task {location} {state}: {body[:300]!r}")
                        break
                    if not wait:
                        raise SystemExit(f"task {location} is {state} though /health said all were done")
        finally:
            conn.close()

    await asyncio.gather(*(reader() for _ in range(connections)))
    return tasks / (time.perf_counter() - start)


# Main ---------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per rate measurement")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="rate runs per server (median)")
    parser.add_argument("--tasks", type=int, default=2000, help="tasks for the end-to-end figure")
    parser.add_argument("--idle", type=float, default=10, help="seconds of idle CPU measurement")
    parser.add_argument(
        "--drain-timeout", type=float, default=300, help="longest wait for the submission backlog to finish"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="module-speed-"))
    try:
        project = work / "module"
        names = render(project)
        python = bench_env(project)
        package, prefix = names["package_name"], names["env_prefix"]
        (work / "bare_app.py").write_text(BARE_APP)
        probe = subprocess.run(
            [str(python), "-c", "import uvloop, httptools; print('uvloop+httptools')"],
            capture_output=True,
            text=True,
            check=False,
        )
        stack = probe.stdout.strip() or "asyncio+h11 (uvloop/httptools not installed)"
        loadgen = "wrk" if shutil.which("wrk") else "python asyncio keep-alive client (no wrk)"
        print(
            f"machine:    {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        )
        print(f"server:     uvicorn ({stack}), 1 process{', pinned to CPU 0' if pinned(0) else ''}")
        print(
            f"load:       {loadgen}{', pinned to CPU 1' if pinned(1) else ''}, "
            f"{args.connections} connections, {args.duration:g} s x {args.rounds} rounds"
        )

        base_env = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
        base_env["PYTHONPATH"] = str(project / "src")
        # Compiled first, as `pip install` (the image's) does: start-up then measures a
        # start, not the one-off compilation of the module's own files.
        subprocess.run([str(python), "-m", "compileall", "-q", str(project / "src")], check=True)
        port, bare_port = free_port(), free_port()
        settings = {
            "PORT": str(port),
            "MANIFEST_DIR": str(project / "manifests"),
            "DATA_DIR": str(work / "data"),
            "JWT_SECRET": SECRET,
            # The limiter stays on (its cost is measured) but never refuses the load.
            "RATE_LIMIT_REQUESTS": str(10**9),
            # Submissions outpace the workers during the rate run: let them queue.
            "MAX_QUEUED_TASKS": str(10**7),
        }
        module_env = {**base_env, **{prefix + k: v for k, v in settings.items()}}
        module_env["BENCH_LOG"] = str(work / "module.log")
        token = subprocess.run(
            [str(python), "-m", package, "token", "issue", "--subject", "bench"],
            env=module_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        module_cmd = [str(python), "-m", package, "serve"]
        # Same uvicorn settings as `serve`: auto loop/http, no access log, no server header.
        bare_cmd = [
            str(python),
            "-m",
            "uvicorn",
            "bare_app:app",
            "--app-dir",
            str(work),
            "--host",
            "127.0.0.1",
            "--port",
            str(bare_port),
            "--no-access-log",
            "--no-server-header",
            "--log-level",
            "warning",
        ]

        results: dict[str, float] = {}
        with server(module_cmd, module_env, f"http://127.0.0.1:{port}/ready") as (pid, startup):
            results["startup"] = startup
            results["rss_idle"] = status_kib(pid, "VmRSS") / 1024
            before = cpu_seconds(pid)
            time.sleep(args.idle)
            results["idle_cpu"] = 100 * (cpu_seconds(pid) - before) / args.idle
            auth = get(f"http://127.0.0.1:{port}/v1/tasks/00000000-0000-4000-8000-000000000000")
            authenticated = auth == 401

            def drain() -> float:
                """Seconds until the module has run every task a submission round queued."""
                start = time.perf_counter()
                while True:
                    health = module_health(port)
                    if idle(health):
                        return time.perf_counter() - start
                    if time.perf_counter() - start > args.drain_timeout:
                        raise SystemExit(f"backlog not drained after {args.drain_timeout:g} s: {health}")
                    time.sleep(0.05)

            samples: dict[str, list[float]] = {"bare_health": [], "health": [], "floor_submit": [], "submit": []}
            drains: list[float] = []
            # Per submission round: (tasks accepted, still queued or running at its end,
            # module CPU seconds during it, module CPU seconds while the rest ran after it).
            rounds: list[tuple[float, int, float, float]] = []
            bare_cpu: list[float] = []  # the bare app's CPU seconds per /health request
            with server(bare_cmd, base_env, f"http://127.0.0.1:{bare_port}/health") as (bare_pid, _s):
                # Warm-up, every path of every round: a first round also pays for one-time
                # work (the task store's files growing, first allocations).
                for port_ in (bare_port, port):
                    rate(port_, "/health", 2, args.connections, None, work)
                    rate(port_, "/v1/analyze", 2, args.connections, token, work)
                drain()
                # Every figure once per round, so drift between rounds hits all alike. Each
                # submission round starts from an idle module, as each bare round starts from an
                # idle app: the module runs what the round queued before the next round begins
                # (pinned to the servers' CPU, that work would otherwise slow the bare app).
                for _ in range(args.rounds):
                    for name, port_, path in (
                        ("bare_health", bare_port, "/health"),
                        ("health", port, "/health"),
                        ("floor_submit", bare_port, "/v1/analyze"),
                        ("submit", port, "/v1/analyze"),
                    ):
                        bearer = token if path == "/v1/analyze" else None
                        owner = pid if port_ == port else bare_pid
                        cpu_before = cpu_seconds(owner)
                        value, bad = rate(port_, path, args.duration, args.connections, bearer, work)
                        spent = cpu_seconds(owner) - cpu_before
                        if bad:
                            raise SystemExit(f"{name} {path}: {bad} non-2xx answers")
                        samples[name].append(value)
                        if name == "bare_health":
                            bare_cpu.append(spent / (value * args.duration))
                        elif name == "submit":
                            accepted, left, round_cpu = value * args.duration, in_flight(port), spent
                    drain_start = cpu_seconds(pid)
                    drains.append(drain())
                    rounds.append((accepted, left, round_cpu, cpu_seconds(pid) - drain_start))
            results.update({k: statistics.median(v) for k, v in samples.items()})
            readers = min(args.connections, 32)
            results["e2e"] = asyncio.run(task_throughput(port, token, args.tasks, readers, wait=True))
            results["e2e_pace"] = asyncio.run(task_throughput(port, token, args.tasks, readers, wait=False))
            results["rss_after"] = status_kib(pid, "VmRSS") / 1024
            results["rss_peak"] = status_kib(pid, "VmHWM") / 1024

        # The same flood against a module with its default queue bound, as deployed:
        # once MAX_QUEUED_TASKS are waiting, submissions are refused (503, Retry-After),
        # and what counts is how many it still accepts (and runs) meanwhile.
        bounded_port = free_port()
        bounded = {**settings, "PORT": str(bounded_port), "DATA_DIR": str(work / "data-bounded")}
        del bounded["MAX_QUEUED_TASKS"]
        bounded_env = {**base_env, **{prefix + k: v for k, v in bounded.items()}}
        bounded_env["BENCH_LOG"] = str(work / "module-bounded.log")
        with server(module_cmd, bounded_env, f"http://127.0.0.1:{bounded_port}/ready"):
            rate(bounded_port, "/v1/analyze", 2, args.connections, token, work)  # warm-up
            value, refused = rate(bounded_port, "/v1/analyze", args.duration, args.connections, token, work)
            answered = value * args.duration
            results["bounded_accepted"] = (answered - refused) / args.duration
            results["bounded_refused"] = refused / args.duration

        health_ratio = results["health"] / results["bare_health"]
        submit_ratio = results["submit"] / results["bare_health"]
        floor_ratio = results["floor_submit"] / results["bare_health"]

        def mark(ok: bool) -> str:
            return "ok" if ok else "BELOW TARGET"

        print(f"bare FastAPI /health:           {results['bare_health']:9.0f} req/s")
        print(
            f"module /health:                 {results['health']:9.0f} req/s   "
            f"ratio {health_ratio:.2f} (target >= 0.85: {mark(health_ratio >= 0.85)})"
        )
        print(
            f"module POST /v1/analyze ({'JWT' if authenticated else 'no auth'}): "
            f"{results['submit']:9.0f} req/s   ratio {submit_ratio:.2f} to bare /health "
            f"(target >= 0.5: {mark(submit_ratio >= 0.5)})"
        )
        print(
            f"bare FastAPI POST /v1/analyze (same body model, one header dependency, no work): "
            f"{results['floor_submit']:.0f} req/s   ratio {floor_ratio:.2f}: the framework's floor"
        )
        print(
            f"end-to-end tasks ({args.tasks}, submit until every result is read): "
            f"{results['e2e']:.0f} tasks/s with clients long-polling (?wait=), "
            f"{results['e2e_pace']:.0f} tasks/s reading once all are done"
        )
        print(
            "submission rounds: "
            + ", ".join(f"{value:.0f}" for value in samples["submit"])
            + " req/s; ratios to the same round's bare /health: "
            + ", ".join(f"{a / b:.2f}" for a, b in zip(samples["submit"], samples["bare_health"], strict=True))
            + "; run within the round: "
            + ", ".join(f"{100 * (accepted - left) / accepted:.0f} %" for accepted, left, _, _ in rounds)
            + " of its tasks"
        )
        # Where a submission round's CPU went ("Why the CPU split" in the docstring).
        bare_us = 1e6 * statistics.median(bare_cpu)
        whole = [1e6 * (round_cpu + after) / accepted for accepted, _, round_cpu, after in rounds]
        print(
            f"module CPU per task, accepted and run: {statistics.median(whole):.0f} us "
            f"(bare /health: {bare_us:.0f} us per request; ratio {bare_us / statistics.median(whole):.2f})"
        )
        split = [
            (1e6 * (round_cpu - (accepted - left) * after / left) / accepted, 1e6 * after / left)
            for accepted, left, round_cpu, after in rounds
            if left >= 0.05 * accepted  # enough of a backlog to time runs by
        ]
        if split:
            accept_us = statistics.median(s for s, _ in split)
            run_us = statistics.median(r for _, r in split)
            print(
                f"  of which accepting {accept_us:.0f} us (ratio {bare_us / accept_us:.2f} to bare /health), "
                f"running {run_us:.0f} us (timed on the backlog after each round)"
            )
        print(
            "each round's queued tasks ran in "
            + ", ".join(f"{seconds:.1f}" for seconds in drains)
            + " s after it ("
            + ", ".join(f"{left} of {accepted:.0f}" for accepted, left, _, _ in rounds)
            + " tasks)"
        )
        print(
            f"flood with the default queue bound (MAX_QUEUED_TASKS): {results['bounded_accepted']:.0f} "
            f"submissions/s accepted, {results['bounded_refused']:.0f}/s refused (503 with Retry-After)"
        )
        print(f"start-up to ready:              {results['startup']:9.2f} s")
        print(f"idle CPU over {args.idle:g} s:            {results['idle_cpu']:9.2f} % of one core")
        print(
            f"RSS: idle {results['rss_idle']:.0f} MiB, after load {results['rss_after']:.0f} MiB, "
            f"peak {results['rss_peak']:.0f} MiB"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
