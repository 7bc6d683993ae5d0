"""Unit tests of the Jinja extensions (filters, schema-driven rules)."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from conftest import REPO, template_snapshot, tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2.runtime import Context
from jsonschema import Draft202012Validator

sys.path.insert(0, str(REPO))

from extensions import naming, validation

TEXTS = ["plain", "q\"uo'te", "back\\slash", "new\nline", "emoji 🚀 ü", "ctrl\x01\x7f", "$(x) `y` ${z}"]


@pytest.mark.parametrize("text", TEXTS)
def test_toml_filter_round_trips(text: str) -> None:
    assert tomllib.loads(f"v = {naming.toml_string(text)}")["v"] == text


@pytest.mark.parametrize("text", TEXTS)
def test_py_filter_round_trips(text: str) -> None:
    assert ast.literal_eval(naming.py_literal(text)) == text
    assert naming.py_literal(text).startswith('"')


@pytest.mark.parametrize("text", TEXTS)
def test_sh_filter_is_one_word(text: str) -> None:
    assert shlex.split(naming.shell_quote(text)) == [text]


def test_names() -> None:
    assert naming.package_name("my-blux-module") == "my_blux_module"
    assert naming.env_prefix("edge-gateway-7") == "EDGE_GATEWAY_7_"


TEMPLATE_ONLY = {"platform", "include_kubernetes", "ci_provider", "task_backend", "env_prefix", "answers_checked"}


def test_every_question_but_template_options_maps_to_a_schema() -> None:
    mapped = set().union(*(validation.question_fields(p) for p in validation.PLATFORMS))
    assert mapped == set(validation.questions()) - TEMPLATE_ONLY
    # Only the KSE questions are one platform's; everything else means the same on both.
    assert validation.platform_only() == {
        name: ("liftos",)
        for name in ("kse_enabled", "memory_types", "search_capabilities", "kse_index_prefix", "kse_batch_size")
    }


def test_shared_questions_have_one_rule_in_every_schema() -> None:
    """The two platforms' schemas state shared fields identically: no drift between them."""
    shared = set(validation.question_fields("blux")) & set(validation.question_fields("liftos"))
    assert len(shared) >= 18
    for name in shared:
        nodes = [validation.question_fields(p)[name][1] for p in validation.PLATFORMS]
        assert nodes[0] == nodes[1], name
    assert validation.manifest_schema("blux")["$defs"] == validation.manifest_schema("liftos")["$defs"]


@pytest.mark.parametrize("name", sorted(p.name for p in validation.SCHEMA_DIR.glob("*.json")))
def test_every_shipped_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    # Neither the answer check nor the generated module re-checks them at run time.
    Draft202012Validator.check_schema(json.loads((validation.SCHEMA_DIR / name).read_text("utf-8")))


@pytest.mark.parametrize("platform", validation.PLATFORMS)
def test_every_mapped_field_states_its_rule(platform: str) -> None:
    schema = validation.manifest_schema(platform)
    for name, (_, node) in validation.question_fields(platform).items():
        resolved = validation._deref(schema, node)
        has_rule = (
            "x-rule" in node
            or "x-rule" in resolved
            or any("x-rule" in validation._deref(schema, s) for s in node.get("allOf", []))
        )
        assert has_rule, name


@pytest.mark.parametrize("platform", validation.PLATFORMS)
def test_defaults_satisfy_every_rule(platform: str) -> None:
    answers, asked = validation.resolve({"platform": platform}, naming.FILTERS)
    validation.check_all(answers)
    kse = {"kse_enabled", "memory_types", "search_capabilities", "kse_index_prefix", "kse_batch_size"}
    assert (kse <= asked) == (platform == "liftos")
    assert answers["port"] == {"blux": 8000, "liftos": 9001}[platform]
    assert answers["module_name"] == f"my-{platform}-module"


def test_resolve_parses_given_answers_like_data() -> None:
    answers, asked = validation.resolve(
        {"platform": "liftos", "module_name": "kse-app", "kse_enabled": "no", "port": "9100"}, naming.FILTERS
    )
    assert answers["package_name"] == "kse_app" and answers["kse_index_prefix"] == "kse_app_"
    assert answers["kse_enabled"] is False and answers["port"] == 9100
    assert "kse_enabled" in asked and "memory_types" not in asked  # asked only when KSE is on


def test_manifest_built_from_answers_validates_and_policy_follows() -> None:
    answers, _ = validation.resolve({}, naming.FILTERS)
    manifest = validation.build_manifest(answers)
    validation.check_manifest(manifest)
    policy = validation.build_policy(manifest)
    assert policy["events"]["may_produce"] == manifest["integration"]["events"]["produces"]
    assert policy["audit"]["record_payloads"] is False  # encrypted by default
    schema = json.loads((validation.SCHEMA_DIR / "doctrine.policy.schema.json").read_text())
    from jsonschema import Draft202012Validator

    assert list(Draft202012Validator(schema).iter_errors(policy)) == []


def test_liftos_module_json_follows_the_guide_and_the_answers() -> None:
    answers, _ = validation.resolve(
        {"platform": "liftos", "search_capabilities": "[keyword, temporal]", "kse_batch_size": "25"}, naming.FILTERS
    )
    document = validation.build_manifest(answers)
    validation.check_manifest(document, "liftos")
    # The guide's module.json fields, filled from the answers.
    for key in ("name", "version", "description", "author", "license", "endpoints", "capabilities"):
        assert key in document
    assert document["kse_integration"] == {
        "enabled": True,
        "memory_types": ["analytics_data", "user_insights", "reports"],
        "search_capabilities": ["keyword", "temporal"],
        "index_prefix": "my_liftos_module_",
        "batch_size": 25,
    }
    assert document["configuration"] == {"port": 9001}
    assert document["endpoints"]["health"] == "/health" and document["endpoints"]["ready"] == "/ready"


def test_a_question_of_the_other_platform_is_refused() -> None:
    with pytest.raises(validation.AnswerError, match="applies only when platform is liftos"):
        validation.check_question("kse_enabled", True, "blux")
    validation.check_question("kse_enabled", True, "liftos")


def test_verbose_standard_records_payloads() -> None:
    manifest = {
        "module": {"name": "m-x"},
        "integration": {"events": {"produces": [], "consumes": []}},
        "security": {"authentication": "none", "audit_level": "verbose", "data_handling": "standard"},
        "runtime": {"max_concurrent_tasks": 3},
    }
    assert validation.build_policy(manifest)["audit"]["record_payloads"] is True


class FakeContext(dict[str, Any]):
    pass


def _ctx(defaults: bool, data: dict[str, Any], **answers: Any) -> Context:
    # Stands in for Jinja's Context: the validators only read it as a mapping.
    return cast(
        Context, FakeContext({"_copier_conf": {"defaults": defaults, "data": data}, "platform": "blux", **answers})
    )


def test_interactive_validator_returns_the_rule() -> None:
    message = validation.answer_error(_ctx(False, {}, port=22), "port")
    assert message == "must be an integer from 1024 to 65535 (got 22)"


def test_non_interactive_validator_defers_to_the_guards() -> None:
    assert validation.answer_error(_ctx(True, {}, port=22), "port") == ""
    assert validation.answer_error(_ctx(False, {"port": "22"}, port=22), "port") == ""


def test_own_code_is_ruff_and_mypy_clean() -> None:
    """modforge's own Python is held to the bar it sets for generated modules."""
    bin_dir = Path(sys.executable).parent
    for cmd in (["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]):
        proc = subprocess.run([str(bin_dir / cmd[0]), *cmd[1:]], cwd=REPO, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_questions_reference_has_not_drifted() -> None:
    proc = subprocess.run([sys.executable, "docs/questions.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_compile_cache_reuses_code_but_never_stale_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jinja2 import Environment, FileSystemLoader

    from extensions import compile_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls: list[str | None] = []
    real = Environment._generate

    def counting(self: Environment, *args: Any, **kwargs: Any) -> str:
        calls.append(args[1] if len(args) > 1 else None)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Environment, "_generate", counting)
    ext = [compile_cache.CompileCacheExtension]
    source = "{{ value | upper }}-{{ 6 * 7 }}"
    assert Environment(extensions=ext).from_string(source).render(value="a") == "A-42"
    assert Environment(extensions=ext).from_string(source).render(value="b") == "B-42"
    assert len(calls) == 1, "a second environment compiled the same source again"

    # Copier's extension loader executes the file anew for every render, under the
    # same module name: the memo must outlive the module object.
    def load_as_copier_does() -> Any:
        spec = importlib.util.spec_from_file_location(
            "copier_template_extensions.compile_cache",
            REPO / "extensions" / "compile_cache.py",
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    first, second = load_as_copier_does(), load_as_copier_does()
    assert first is not second
    assert Environment(extensions=[first.CompileCacheExtension]).from_string(source).render(value="c") == "C-42"
    assert Environment(extensions=[second.CompileCacheExtension]).from_string(source).render(value="d") == "D-42"
    assert len(calls) == 2, "a re-executed extension module compiled the same source again"
    # Another syntax compiles anew, and means what it says.
    other = Environment(extensions=ext, variable_start_string="[[", variable_end_string="]]")
    assert compile_cache.fingerprint(other) != compile_cache.fingerprint(Environment(extensions=ext))
    assert other.from_string(source).render(value="a") == source

    # Files: bytecode on disk, keyed by name, checked against the source.
    templates = tmp_path / "t"
    templates.mkdir()
    (templates / "page.txt").write_text("one {{ n }}", "utf-8")

    def render() -> str:
        return Environment(loader=FileSystemLoader(templates), extensions=ext).get_template("page.txt").render(n=1)

    assert render() == "one 1"
    cache = tmp_path / "cache" / "modforge" / "jinja"
    assert list(cache.iterdir()) and (cache.stat().st_mode & 0o077) == 0
    (templates / "page.txt").write_text("two {{ n }}", "utf-8")
    assert render() == "two 1"


def test_a_reused_compile_still_runs_the_extensions_preprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Copier's yield extension resets its context in preprocess: a cached compile must too."""
    from copier._jinja_ext import YieldExtension, get_yield_context
    from jinja2.sandbox import SandboxedEnvironment

    from extensions import compile_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    env = SandboxedEnvironment(extensions=[YieldExtension, compile_cache.CompileCacheExtension])
    plain, yielding = "{{ name }}.py", "{% yield item from items %}{{ item }}{% endyield %}"
    assert env.from_string(plain).render(name="a") == "a.py"  # compiled, and kept
    env.from_string(yielding).render(items=["x", "y"])
    assert get_yield_context(env).yield_name == "item"
    assert env.from_string(plain).render(name="b") == "b.py"  # reused
    assert get_yield_context(env).yield_name is None, "a path part after a yield would be yielded too"


PLAIN_TEXT_ENVIRONMENTS: list[dict[str, Any]] = [
    {},
    {"keep_trailing_newline": True},
    {"newline_sequence": "\r\n", "keep_trailing_newline": True},
    {"variable_start_string": "[[", "variable_end_string": "]]", "keep_trailing_newline": True},
    {"line_statement_prefix": "%", "keep_trailing_newline": True},
    {"trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True},
]


@pytest.mark.parametrize("options", PLAIN_TEXT_ENVIRONMENTS, ids=lambda o: ",".join(o) or "default")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.text(alphabet="{}%#[]ab \n\r\t-", max_size=12))
def test_a_string_without_markup_renders_as_jinja_renders_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], source: str
) -> None:
    from jinja2 import Environment

    from extensions import compile_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def render(environment: Environment) -> str | type[Exception]:
        try:
            return environment.from_string(source).render(a=1)
        except Exception as exc:  # markup drawn at random: a syntax error, an undefined name...
            return type(exc)

    shortcut = Environment(extensions=[compile_cache.CompileCacheExtension], **options)
    assert render(shortcut) == render(Environment(**options))


def test_only_plain_text_skips_the_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from copier._jinja_ext import YieldExtension, get_yield_context
    from jinja2.sandbox import SandboxedEnvironment

    from extensions import compile_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    env = SandboxedEnvironment(
        extensions=[YieldExtension, compile_cache.CompileCacheExtension], keep_trailing_newline=True
    )
    plain = env.from_string("tests")
    assert isinstance(plain, compile_cache.PlainText) and plain.render(x=1) == "tests"
    assert list(plain.generate()) == ["tests"]  # anything else gets the real template
    assert not isinstance(env.from_string("{{ x }}"), compile_cache.PlainText)
    assert not isinstance(env.from_string("a\r\nb"), compile_cache.PlainText)  # the lexer rewrites it
    with pytest.raises(TypeError):
        env.from_string(7)  # type: ignore[arg-type]  # as Jinja does: Copier relies on it
    # A path part after a yield is not yielded: the extension's reset still runs.
    env.from_string("{% yield item from items %}{{ item }}{% endyield %}").render(items=["x", "y"])
    assert get_yield_context(env).yield_name == "item"
    assert env.from_string("tests").render() == "tests"
    assert get_yield_context(env).yield_name is None


def test_plain_text_strings_render_the_same_module(tmp_path: Path) -> None:
    """The default module, rendered with the shortcut and with it taken out, byte for byte."""
    from copier import _main

    template = tmp_path / "template"  # one path for both renders: it is in the answers file
    shutil.copytree(template_snapshot(), template)
    _main.run_copy(str(template), str(tmp_path / "with"), defaults=True, unsafe=True, quiet=True)
    extension = template / "extensions" / "compile_cache.py"
    line = "        environment.from_string = _plain_text_shortcut(environment)  # type: ignore[method-assign]\n"
    assert line in extension.read_text("utf-8")
    extension.write_text(extension.read_text("utf-8").replace(line, ""), "utf-8")
    _main.run_copy(str(template), str(tmp_path / "without"), defaults=True, unsafe=True, quiet=True)
    assert tree(tmp_path / "with") == tree(tmp_path / "without")


def test_git_file_mode_is_asked_once_per_render_and_still_honoured(tmp_path: Path) -> None:
    """Through the real CLI, counting the git commands Copier runs with a logging `git` first on PATH."""
    real_git, log = shutil.which("git"), tmp_path / "git.log"
    assert real_git is not None
    shim = tmp_path / "bin" / "git"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {shlex.quote(str(log))}\nexec {shlex.quote(real_git)} "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}
    copier = [str(Path(sys.executable).with_name("copier")), "copy", "--trust", "--defaults", "--vcs-ref", "HEAD"]

    def copy(dst: Path, *extra: str) -> tuple[int, int]:
        log.write_text("")
        proc = subprocess.run([*copier, *extra, str(REPO), str(dst)], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        asks = sum("core.fileMode" in line for line in log.read_text().splitlines())
        return asks, sum(1 for p in dst.rglob("*") if p.is_file() and ".git" not in p.parts)

    asks, files = copy(tmp_path / "fresh")
    assert files > 50 and asks == 1, f"{asks} `git config core.fileMode` for {files} files"

    # Where git ignores the executable bit, Copier's own method still fixes the index.
    dst = tmp_path / "tracked"
    (dst / "scripts").mkdir(parents=True)
    (dst / "scripts" / "update.sh").write_text("#!/bin/sh\n")
    git = [real_git, "-C", str(dst)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "config", "core.fileMode", "false"], check=True)
    subprocess.run([*git, "add", "scripts/update.sh"], check=True)
    asks, files = copy(dst, "--overwrite")
    assert asks >= files > 50, "with core.fileMode false every file goes through Copier's method"
    staged = subprocess.run([*git, "ls-files", "--stage", "scripts/update.sh"], capture_output=True, text=True)
    assert staged.stdout.startswith("100755 "), staged.stdout


def test_compiled_strings_are_reused_by_the_next_process(tmp_path: Path) -> None:
    """The command line is a new process each time: strings compiled by one run are read by the next."""
    script = """
import sys
from jinja2 import Environment
sys.path.insert(0, sys.argv[1])
from extensions import compile_cache
compiles = []
real = Environment._generate
Environment._generate = lambda self, *a, **k: compiles.append(1) or real(self, *a, **k)
env = Environment(extensions=[compile_cache.CompileCacheExtension])
print(env.from_string(sys.argv[2]).render(n=6), len(compiles))
"""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def run(source: str) -> str:
        command = [sys.executable, "-c", script, str(REPO), source]
        proc = subprocess.run(command, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert run("{{ n * 7 }}") == "42 1"
    stores = list((tmp_path / "cache" / "modforge" / "jinja").glob("modforge-strings-*.cache"))
    assert len(stores) == 1
    assert run("{{ n * 7 }}") == "42 0", "the next process compiled the same string again"
    assert run("{{ n * 8 }}") == "48 1", "another string must compile, and mean what it says"
    stores[0].write_bytes(b"damaged")
    assert run("{{ n * 7 }}") == "42 1", "a damaged store is ignored"
    assert run("{{ n * 7 }}") == "42 0", "and replaced"


def renders_with_and_without_render_context(
    tmp_path: Path, counted: list[int], copier_as_shipped: Callable[[], None]
) -> tuple[int, int]:
    """The default module rendered with extensions/render_context.py, then without it
    (copier.yml no longer lists it, and ``copier_as_shipped`` puts back what it wrapped):
    how many entries ``counted`` gained in each render. Both renders write the same files."""
    from copier import _main

    template = tmp_path / "template"  # one path for both renders: it is in the answers file
    shutil.copytree(template_snapshot(), template)

    def render(dst: Path) -> int:
        counted.clear()
        _main.run_copy(str(template), str(dst), defaults=True, unsafe=True, quiet=True)
        return len(counted)

    with_extension = render(tmp_path / "with")
    spec = template / "copier.yml"
    line = "  - extensions/render_context.py:RenderContextExtension\n"
    assert line in spec.read_text("utf-8")
    spec.write_text(spec.read_text("utf-8").replace(line, ""), "utf-8")
    copier_as_shipped()
    without = render(tmp_path / "without")
    assert tree(tmp_path / "with") == tree(tmp_path / "without")
    return with_extension, without


def test_the_render_context_is_built_once_per_render_and_renders_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted through Copier's own ``_answers_to_remember``, which each context build calls once."""
    from copier import _main

    builds: list[int] = []
    real = _main.Worker._answers_to_remember

    def counted(self: _main.Worker) -> Any:
        builds.append(1)
        return real(self)

    monkeypatch.setattr(_main.Worker, "_answers_to_remember", counted)

    def copier_as_shipped() -> None:
        monkeypatch.setattr(_main.Worker, "_render_context", inspect.unwrap(_main.Worker._render_context))

    with_extension, without = renders_with_and_without_render_context(tmp_path, builds, copier_as_shipped)
    # Outside the pass over the template (questions, messages) Copier still builds its own.
    assert with_extension * 10 < without, (with_extension, without)


def test_the_answers_file_name_is_computed_once_per_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Copier asks ``Worker.answers_relpath`` for every path part; it renders a name that cannot change."""
    from copier import _main

    original = inspect.unwrap(vars(_main.Worker)["answers_relpath"].fget)
    computed: list[int] = []

    def counted(self: _main.Worker) -> Any:
        computed.append(1)
        return original(self)

    def copier_as_shipped() -> None:
        """With a counter: when loaded, the extension installs itself over it."""
        for name in ("_render_context", "_render_template"):
            monkeypatch.setattr(_main.Worker, name, inspect.unwrap(getattr(_main.Worker, name)))
        monkeypatch.setattr(_main.Worker, "answers_relpath", property(counted))

    copier_as_shipped()
    with_extension, without = renders_with_and_without_render_context(tmp_path, computed, copier_as_shipped)
    assert with_extension <= 3 and without > 100, (with_extension, without)
