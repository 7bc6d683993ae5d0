"""Invalid answers are refused in one line naming the question, and nothing is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, render
from copier.errors import UserMessageError

# (answers, question named, words of the rule expected in the message)
INVALID = [
    ({"module_name": "Bad_Name"}, "module_name", "kebab-case"),
    ({"module_name": "ab"}, "module_name", "3-50 characters"),
    ({"module_name": "a" * 51}, "module_name", "3-50 characters"),
    ({"module_name": "9lives"}, "module_name", "starting with a letter"),
    ({"module_name": "trailing-"}, "module_name", "kebab-case"),
    ({"package_name": "class"}, "package_name", "keyword"),
    ({"package_name": "json"}, "package_name", "standard library"),
    ({"package_name": "fastapi"}, "package_name", "dependency"),
    ({"package_name": "My-Pkg"}, "package_name", "Python identifier"),
    ({"module_name": "abc"}, "package_name", "standard library"),
    ({"module_version": "1.0"}, "module_version", "semantic version"),
    ({"module_version": "v1.0.0"}, "module_version", "semantic version"),
    ({"description": ""}, "description", "1-200 characters"),
    ({"description": "x" * 201}, "description", "1-200 characters"),
    ({"description": "two\nlines"}, "description", "one line"),
    # U+0085 (NEL) is a C1 control character and a YAML line break: the answers file
    # would read it back as a space.
    ({"description": "one\x85line"}, "description", "control characters"),
    ({"author_name": "Dev\x9bTeam"}, "author_name", "control characters"),
    ({"description": "   "}, "description", "not blank"),
    ({"author_email": "not-an-email"}, "author_email", "email"),
    ({"author_email": "a@b"}, "author_email", "email"),
    ({"module_type": "worker"}, "module_type", "processor, analyzer"),
    ({"capabilities": "[]"}, "capabilities", "at least one"),
    ({"capabilities": "[Data]"}, "capabilities", "snake_case"),
    ({"capabilities": "[a, a]"}, "capabilities", "unique"),
    ({"capabilities": "[a"}, "capabilities", "valid YAML"),
    ({"events_consumes": "[TaskAssigned]"}, "events_consumes", "dotted"),
    ({"events_produces": "[task.done, task.done]"}, "events_produces", "unique"),
    ({"apis_provided": "[/analyze]"}, "apis_provided", "versioned"),
    ({"apis_provided": "[/v1/transform]"}, "apis_provided", "/v1/analyze"),
    ({"apis_required": "[v1/tasks]"}, "apis_required", "versioned"),
    ({"authentication": "sometimes"}, "authentication", "required, optional, none"),
    ({"audit_level": "max"}, "audit_level", "none, basic"),
    ({"data_handling": "plain"}, "data_handling", "encrypted, standard"),
    ({"port": "80"}, "port", "1024 to 65535"),
    ({"port": "70000"}, "port", "1024 to 65535"),
    ({"port": "http"}, "port", "integer"),
    ({"max_concurrent_tasks": "0"}, "max_concurrent_tasks", "1 to 1024"),
    ({"max_concurrent_tasks": "2048"}, "max_concurrent_tasks", "1 to 1024"),
    ({"python_version": "3.9"}, "python_version", "3.11, 3.12, 3.13"),
    ({"include_kubernetes": "maybe"}, "include_kubernetes", "true or false"),
    ({"ci_provider": "jenkins"}, "ci_provider", "github, gitlab, none"),
    ({"license": "GPL-3.0"}, "license", "MIT, Apache-2.0, Proprietary"),
    ({"platform": "windows"}, "platform", "blux"),
    # Lift OS's own questions, and their place.
    ({"kse_enabled": "false"}, "kse_enabled", "applies only when platform is liftos"),
    ({"memory_types": "[a]"}, "memory_types", "applies only when platform is liftos"),
    ({"platform": "liftos", "kse_enabled": "sometimes"}, "kse_enabled", "true or false"),
    ({"platform": "liftos", "memory_types": "[Events]"}, "memory_types", "snake_case"),
    ({"platform": "liftos", "memory_types": "[a, a]"}, "memory_types", "unique"),
    ({"platform": "liftos", "search_capabilities": "keyword"}, "search_capabilities", "YAML list"),
    ({"platform": "liftos", "search_capabilities": "[fuzzy]"}, "search_capabilities", "semantic, keyword"),
    ({"platform": "liftos", "kse_index_prefix": "Bad-Prefix"}, "kse_index_prefix", "lowercase letters"),
    ({"platform": "liftos", "kse_index_prefix": "p" * 49}, "kse_index_prefix", "1-48 characters"),
    ({"platform": "liftos", "kse_batch_size": "0"}, "kse_batch_size", "1 to 1000"),
    ({"platform": "liftos", "kse_batch_size": "many"}, "kse_batch_size", "integer"),
    # Cross-field rules, checked on the whole manifest.
    ({"authentication": "none"}, "authentication", "data_handling is encrypted"),
    ({"audit_level": "none"}, "audit_level", "data_handling is encrypted"),
    ({"module_type": "connector", "apis_required": "[]"}, "apis_required", "connector"),
    ({"platform": "liftos", "authentication": "none"}, "authentication", "data_handling is encrypted"),
    ({"platform": "liftos", "module_type": "connector"}, "apis_required", "connector"),
    ({"platform": "liftos", "memory_types": "[]"}, "memory_types", "at least one memory type"),
    ({"platform": "liftos", "search_capabilities": "[]"}, "search_capabilities", "at least one search"),
]


@pytest.mark.parametrize(
    ("answers", "question", "rule"), INVALID, ids=[f"{q}-{i}" for i, (_, q, _) in enumerate(INVALID)]
)
def test_invalid_answer_refused(tmp_path: Path, answers: dict[str, Any], question: str, rule: str) -> None:
    dst = tmp_path / "out"
    with pytest.raises(UserMessageError) as info:
        render(dst, answers)
    message = info.value.message
    assert "\n" not in message
    assert f"question '{question}'" in message
    assert rule in message
    assert not dst.exists()


def test_unknown_data_key_refused(tmp_path: Path) -> None:
    dst = tmp_path / "out"
    with pytest.raises(UserMessageError, match="Unknown answer 'modul_name'"):
        render(dst, {"modul_name": "typo-module"})
    assert not dst.exists()


def test_computed_answer_cannot_be_given(tmp_path: Path) -> None:
    with pytest.raises(UserMessageError, match="'env_prefix' is computed"):
        render(tmp_path / "out", {"env_prefix": "X_"})


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    copier = Path(sys.executable).with_name("copier")
    return subprocess.run(
        [str(copier), "copy", "--trust", "--defaults", "--vcs-ref", "HEAD", *args, str(REPO), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-d", "module_name=Bad Name"], "Validation error for question 'module_name': must be kebab-case"),
        (["-d", "zzz=1"], "Unknown answer 'zzz'"),
        (["-d", "authentication=none"], "Validation error for question 'authentication'"),
    ],
)
def test_cli_prints_one_line_and_exits_non_zero(tmp_path: Path, args: list[str], expected: str) -> None:
    proc = _cli(tmp_path, *args)
    assert proc.returncode == 1
    lines = [
        line
        for line in proc.stderr.splitlines()
        if line.strip() and "No git tags" not in line and "DirtyLocalWarning" not in line and "warn(" not in line
    ]
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_data_file_is_validated(tmp_path: Path) -> None:
    data = tmp_path / "answers.yml"
    data.write_text("module_name: ok-name\nport: 22\n", encoding="utf-8")
    proc = _cli(tmp_path, "--data-file", str(data))
    assert proc.returncode == 1
    assert "question 'port'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_without_trust_copier_refuses(tmp_path: Path) -> None:
    copier = Path(sys.executable).with_name("copier")
    proc = subprocess.run(
        [str(copier), "copy", "--defaults", "--vcs-ref", "HEAD", str(REPO), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 4
    assert not (tmp_path / "out").exists()
