"""Harness fixtures: render modules in-process, install them into one shared env.

Generated projects depend on the same libraries whatever the answers, so the
harness builds a single virtual environment (reused across runs while the
generated dependency list is unchanged) and installs each rendered project into
it with ``--no-deps``. Rendering goes through pytest-copie, which calls Copier
in-process, from a snapshot of the working tree (see ``template_snapshot``). Runs
are parallel (pytest-xdist, each answer set on one worker); a file lock
serialises what must not run twice at once (building the env, pip). The env is
built in the background while the tests that need none run first.
At the end a table names each answer set and the outcome of each check.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
import venv
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"
HAND_SETS: dict[str, dict[str, Any]] = yaml.safe_load((REPO / "tests" / "answer_sets.yml").read_text("utf-8"))
MATRIX_SETS: dict[str, dict[str, Any]] = yaml.safe_load((REPO / "tests" / "matrix.yml").read_text("utf-8"))
ANSWER_SETS: dict[str, dict[str, Any]] = {**HAND_SETS, **MATRIX_SETS}
RELEASES: list[dict[str, Any]] = yaml.safe_load((REPO / "tests" / "releases.yml").read_text("utf-8"))


def starts(name: str) -> list[str]:
    """The release versions an answer set updates from (tests/test_upgrade.py): the newest
    that renders its platform, and for "default" every older one too, so the long path
    keeps being tested."""
    platform = ANSWER_SETS[name].get("platform", "blux")
    versions = [r["version"] for r in RELEASES if platform in r["platforms"]]
    return versions if name == "default" else versions[-1:]


def by_set(names: list[str] | None = None) -> list[Any]:
    """Parametrize over answer sets: the test id is the set's name (see ``answer_set_of``)."""
    return [pytest.param(n, id=n) for n in (names or sorted(ANSWER_SETS))]


_PARAM_ID = re.compile(r"\[([^\[\]]+)\]$")


def answer_set_of(nodeid: str) -> str | None:
    """The answer set a test checks, from its id: ``[name]`` (by_set) or
    ``[name-from-version]`` (test_upgrade's updates from older releases)."""
    match = _PARAM_ID.search(nodeid)
    name = match[1].split("-from-")[0] if match else None
    return name if name in ANSWER_SETS else None


@pytest.hookimpl(optionalhook=True)  # xdist's hooks: absent with -p no:xdist
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker more than the CPUs this process may use.

    A generated project's suite leaves a CPU idle for about a third of its time (its CLI
    and servers starting in subprocesses, its waits on the real clock): with one worker
    per CPU the harness kept two CPUs 83 % busy. Side by side on two CPUs, two workers
    took 4 min 54 s and three 4 min 10 s. PYTEST_XDIST_AUTO_NUM_WORKERS still decides
    when set (xdist's own hook reads it).
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return len(os.sched_getaffinity(0)) + 1


@pytest.hookimpl(optionalhook=True)  # xdist's hooks: absent with -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Every test of one answer set on one worker, which renders and installs the set
    once (``generated``); other tests are spread one by one, in collection order
    (``pytest_collection_modifyitems``: those that need no module env first).

    Not ``--dist loadgroup``: xdist 3.8 marks a group by appending to ``item._nodeid``,
    which pytest 9.2 no longer reads, so with it every set was rendered and installed
    on both workers.
    """
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class BySet(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no types
        def _split_scope(self, nodeid: str) -> str:
            return answer_set_of(nodeid) or nodeid

    return BySet(config, log)


@contextlib.contextmanager
def harness_lock(name: str = "harness") -> Iterator[None]:
    """Exclusive across processes and threads (flock: each open is its own lock holder)."""
    CACHE.mkdir(exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class ModuleEnv:
    """The shared environment generated projects are installed into."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYTEST_"))}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.root)
        return env

    def run(
        self, *args: str, cwd: Path, timeout: float = 600, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env(), **(extra_env or {})}
        try:
            return subprocess.run(
                list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            # A failure like any other, with what the command wrote before it was killed
            # (for a generated pytest: faulthandler's stack dump of the hung test).
            def text(data: str | bytes | None) -> str:
                return data.decode(errors="replace") if isinstance(data, bytes) else data or ""

            return subprocess.CompletedProcess(
                list(args), -9, text(exc.stdout), text(exc.stderr) + f"\n(killed after {timeout:g} s)"
            )

    def install(self, project: Path) -> None:
        """Install a generated project (editable, no dependencies: the env has them all)."""
        with harness_lock():  # pip is not safe to run twice at once on one env
            proc = self.run(
                "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                "--no-deps", "--no-build-isolation", "-e", ".", cwd=project,
            )  # fmt: skip
        assert proc.returncode == 0, proc.stderr


def project_requirements(project: Path) -> list[str]:
    meta = tomllib.loads((project / "pyproject.toml").read_text("utf-8"))["project"]
    return sorted({*meta["dependencies"], *meta["optional-dependencies"]["dev"]})


@functools.cache
def probe() -> Path:
    """The template rendered with the default answers, once per process: the dependency
    list and the mypy configuration every generated project shares."""
    import copier  # only when a test needs the env: collection stays quick

    project = Path(tempfile.mkdtemp(prefix="modforge-probe-")) / "project"
    atexit.register(shutil.rmtree, project.parent, True)
    copier.run_copy(str(template_snapshot()), str(project), defaults=True, unsafe=True, quiet=True)
    return project


def prepare_module_env() -> ModuleEnv:
    """The env every generated project is installed into, built once and reused while
    the generated dependency list is unchanged."""
    # Build tools too, so editable installs need no isolated build env per project.
    requirements = [*project_requirements(probe()), "hatchling", "editables"]
    key = hashlib.sha256(json.dumps([sys.version, requirements]).encode()).hexdigest()[:16]
    root = CACHE / f"module-env-{key}"
    marker = root / ".complete"
    with harness_lock():
        if not marker.exists():
            shutil.rmtree(root, ignore_errors=True)
            venv.EnvBuilder(with_pip=True, clear=True).create(root)
            pip = [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            subprocess.run([*pip, *requirements], check=True)
            marker.write_text("\n".join(requirements))
    return ModuleEnv(root)


def prepare_mypy_seed(module_env: ModuleEnv) -> Path:
    """A mypy cache holding the standard library and third-party packages, and no project module.

    Each project is checked with its own copy of it: third-party code is analysed once per run,
    and projects never share entries for their own modules (all have tests/test_api.py and the
    like; mypy takes an entry as fresh when size and mtime match, which renders made in the
    same second with package names of one length do).
    """
    root = CACHE / f"mypy-seed-{module_env.root.name}"
    with harness_lock("mypy-seed"):  # its own lock: projects install meanwhile
        if not (root / ".complete").exists():
            shutil.rmtree(root, ignore_errors=True)
            work = root / "work"
            work.mkdir(parents=True)
            # The projects' own mypy configuration (strict, plugins): entries depend on it.
            shutil.copy(probe() / "pyproject.toml", work)
            (work / "seed.py").write_text("".join(f"import {name}\n" for name in third_party_imports()))
            cache = {"MYPY_CACHE_DIR": str(root / "cache")}
            module_env.run("mypy", "--strict", "--sqlite-cache", "seed.py", cwd=work, extra_env=cache)
            (root / ".complete").touch()
    return root / "cache"


def _prepare_in_background() -> None:
    """Build the env and the mypy seed while the tests that need neither run (see
    pytest_collection_modifyitems). A failure here is left for the fixtures, which
    build again and report it where a test can fail."""
    with contextlib.suppress(Exception):
        prepare_mypy_seed(prepare_module_env())


NEEDS_ENV = "module_env"  # generated and mypy_seed depend on it


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need no module env first, and the env built meanwhile; then the
    hand-written answer sets, then the pairwise ones.

    On a clean clone, building the env (pip) and the mypy seed takes the better part of
    a minute; every test that needs them would wait for it, so those that do not run
    first. Each xdist worker collects the same items in the same order; both start the
    build, and the lock makes the second one find it done. A set's tests run on one
    worker (pytest_xdist_make_scheduler), sets in the order they first appear: the
    hand-written ones take longest (their updates run the `process` tests), so they go
    first and the short pairwise sets even out the end.
    """

    def needs_env(item: pytest.Item) -> bool:
        return NEEDS_ENV in getattr(item, "fixturenames", ())

    def order(item: pytest.Item) -> tuple[bool, bool]:
        return needs_env(item), answer_set_of(item.nodeid) not in HAND_SETS

    items.sort(key=order)  # stable: each part keeps its collection order
    if not items or not needs_env(items[-1]) or config.option.collectonly:
        return
    try:
        # The probe render runs here, in the main thread: Copier is not known to be thread-safe.
        probe()
    except Exception:  # a broken template fails in the tests that render it, not in collection
        return
    threading.Thread(target=_prepare_in_background, name="prepare-module-env", daemon=True).start()


@pytest.fixture(scope="session")
def module_env() -> ModuleEnv:
    """A venv holding every dependency of a generated project (not the projects)."""
    return prepare_module_env()


IMPORTED = re.compile(
    r"^[ \t]*(?:from[ \t]+([A-Za-z_]\w*)[\w.]*[ \t]+import\b|import[ \t]+([A-Za-z_]\w*))", re.MULTILINE
)


def third_party_imports() -> list[str]:
    """Top-level packages the template's Python imports, other than its own and the stdlib's."""
    files = [p for p in (REPO / "template").rglob("*") if p.name.endswith((".py", ".py.jinja"))]
    local = {p.name.split(".")[0] for p in files} | {"__future__"}
    names = {name for p in files for pair in IMPORTED.findall(p.read_text("utf-8")) for name in pair if name}
    return sorted(names - local - set(sys.stdlib_module_names))


@pytest.fixture(scope="session")
def mypy_seed(module_env: ModuleEnv) -> Path:
    return prepare_mypy_seed(module_env)


# A generated project's own suite. -v names each test as it starts, and a test still
# running after 120 s gets every thread's stack printed (the run is killed at 600 s):
# a hang says which test hangs, and where (hung_at). Assertions run plain: rewriting
# a freshly rendered project's test modules is about 1.5 s of CPU a run (run_suite
# reruns what failed with rewriting, for the values).
SUITE = ("python", "-m", "pytest", "-v", "-p", "no:cacheprovider", "-o", "faulthandler_timeout=120", "--assert=plain")
# "-ra" summary lines: "FAILED tests/test_api.py::test_x[a b] - AssertionError: ..."
FAILED_TEST = re.compile(r"^(?:FAILED|ERROR) (.+?::.+?)(?: - .*)?$", re.MULTILINE)


def hung_at(output: str) -> str:
    """From a SUITE run that hung: the test, and the project's own frames of each thread."""
    if "Timeout (" not in output:
        return ""
    before, dump = output.split("Timeout (", 1)
    started = [line for line in before.splitlines() if "::" in line]
    ours = [
        line
        for line in dump.splitlines()
        if "Thread 0x" in line or ('File "/' in line and "/site-packages/" not in line and "/lib/python3" not in line)
    ]
    test = started[-1].split(" ")[0] if started else "(unknown)"
    return f"hung in {test}; the project's frames of each thread, innermost first:\n" + "\n".join(ours[:60]) + "\n\n"


def run_suite(run: Callable[..., subprocess.CompletedProcess[str]], *args: str) -> None:
    """Run a project's SUITE (plus args) with `run` and assert it passed.

    If not: say where it hung (when it did), show how its output ended, and run the
    failed tests again with pytest's assertion rewriting, to show the values compared.
    """
    proc = run(*SUITE, *args)
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""  # "=== 239 passed in 20.1s ===" (-v names tests above)
    if proc.returncode == 0 and " passed" in summary and " failed" not in summary:
        return
    report = (
        f"pytest failed (exit {proc.returncode}):\n{hung_at(proc.stdout)}{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    )
    failed = FAILED_TEST.findall(proc.stdout)
    if failed and "Timeout (" not in proc.stdout:
        again = run(*SUITE, "--assert=rewrite", *failed)
        report += f"\n\nthe failed tests again, with assertion rewriting:\n{again.stdout[-8000:]}"
    raise AssertionError(report)


@dataclass(frozen=True)
class Generated:
    name: str
    answers: dict[str, Any]
    project: Path
    env: ModuleEnv
    rendered: dict[str, bytes]  # the project's files as Copier wrote them, before any check ran

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.env.run(*args, cwd=self.project, timeout=timeout)


@pytest.fixture(scope="session")
def generated(copie_session: Any, module_env: ModuleEnv) -> Iterator[Any]:
    """Render and install an answer set once per worker: ``generated("default")``."""
    cache: dict[str, Generated] = {}

    def get(name: str) -> Generated:
        if name not in cache:
            result = copie_session.copy(extra_answers=ANSWER_SETS[name], template_dir=template_snapshot())
            assert result.exit_code == 0, f"{name}: {result.exception!r}"
            project = result.project_dir
            rendered = tree(project)
            module_env.install(project)
            cache[name] = Generated(name, {**result.answers}, project, module_env, rendered)
        return cache[name]

    yield get


def without_origin(files: dict[str, bytes]) -> dict[str, bytes]:
    """A tree() without the answers file's lines naming where it was rendered from: all
    that tells a render from git apart from one from template_snapshot()."""
    lines = files[".copier-answers.yml"].splitlines(True)
    kept = b"".join(line for line in lines if not line.startswith((b"_src_path:", b"_commit:")))
    return {**files, ".copier-answers.yml": kept}


def tree(root: Path) -> dict[str, bytes]:
    """A rendered project's files (outside .git) and their bytes, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and ".git" not in p.parts}


def _bash_syntax(text: str) -> None:
    checked = subprocess.run(["bash", "-n"], input=text.encode("utf-8"), capture_output=True, check=False)
    if checked.returncode != 0:
        raise SyntaxError(checked.stderr.decode("utf-8", "replace").strip())


# How each file type in a rendered project is parsed. compile(), not ast.parse: it
# also refuses what only the compiler checks (a `return` outside a function, say).
PARSERS: dict[str, Callable[[str, str], object]] = {
    ".py": lambda text, where: compile(text, where, "exec", dont_inherit=True),
    ".json": lambda text, where: json.loads(text),
    ".toml": lambda text, where: tomllib.loads(text),
    ".yml": lambda text, where: list(yaml.safe_load_all(text)),
    ".yaml": lambda text, where: list(yaml.safe_load_all(text)),
    ".sh": lambda text, where: _bash_syntax(text),
}


def parse_files(files: dict[str, bytes]) -> int:
    """Each file (a tree()) parses as its type, so no answer broke a format; returns
    how many files were parsed."""
    parsed = 0
    for where, data in files.items():
        assert ".jinja" not in where, where
        suffix = PurePosixPath(where).suffix
        parser = PARSERS.get(suffix)
        if parser is None:
            continue
        try:
            parser(data.decode("utf-8"), where)
        except Exception as error:  # each parser raises its own kind
            pytest.fail(f"{where} does not parse as {suffix}: {error!r}")
        parsed += 1
    return parsed


@functools.cache
def template_snapshot() -> Path:
    """The files Copier would render from this working tree, copied once per process.

    From a git repository Copier first clones it and commits the uncommitted changes
    into the clone: 0.3 s of each 0.5 s render. A copy of the same files (tracked and
    untracked but not ignored, as they are on disk) renders the same tree without
    that; only ``_src_path`` and ``_commit`` in the answers file differ, and
    ``test_rendering`` and ``test_upgrade`` render from git, as users do.
    """
    listing = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if listing.returncode != 0:  # not a git checkout: Copier renders the directory itself
        return REPO
    root = Path(tempfile.mkdtemp(prefix="modforge-template-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for name in listing.stdout.decode("utf-8").split("\0"):
        source = REPO / name
        if name and source.is_file():  # listed but deleted: Copier would not see it either
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


def render(dst: Path, data: dict[str, Any] | None = None, *, from_git: bool = False, **kwargs: Any) -> Any:
    """Render the template in-process the way ``copier copy --trust`` does (from git: as users do)."""
    import copier

    source, ref = (REPO, "HEAD") if from_git else (template_snapshot(), None)
    return copier.run_copy(
        str(source), str(dst), data=data or {}, defaults=True, unsafe=True, vcs_ref=ref, quiet=True, **kwargs
    )


# --- summary table -------------------------------------------------------------

_CHECK = re.compile(r"::test_(?P<check>\w+)\[(?P<set>[\w-]+)\]$")
_outcomes: dict[str, dict[str, str]] = defaultdict(dict)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    match = _CHECK.search(report.nodeid)
    if match is None or match["set"] not in ANSWER_SETS:
        return
    cell = _outcomes[match["set"]]
    if report.when == "call" or report.outcome != "passed":
        previous = cell.get(match["check"])
        if previous != "FAIL":
            cell[match["check"]] = {"passed": "ok", "failed": "FAIL", "skipped": "-"}[report.outcome]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _outcomes:
        return
    checks = sorted({c for cells in _outcomes.values() for c in cells})
    width = max(len(s) for s in _outcomes) + 1
    terminalreporter.section("answer sets x checks")
    terminalreporter.write_line(" " * width + " ".join(f"{c:>{len(c)}}" for c in checks))
    for name in sorted(_outcomes):
        cells = _outcomes[name]
        terminalreporter.write_line(f"{name:<{width}}" + " ".join(f"{cells.get(c, ''):>{len(c)}}" for c in checks))
