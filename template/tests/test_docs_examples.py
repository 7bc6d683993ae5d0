"""The request examples in README.md and docs/api.md, sent to the real app as written.

Every ``curl ... -d '<json>'`` example is sent in document order (a search finds
what an earlier example stored). It must succeed; where the docs show the
answer in an ``http`` block, the status and body must match what the module
answers: "<...>" and "..." in a documented value stand for anything, and ids
and timestamps for any id and any timestamp. Then the documented task read
(``GET /v1/tasks/<id>`` and its ``json`` answer) is asked of the first analysis
the examples submitted, once it has finished: the documented result must be
the one the module computes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PROJECT = Path(__file__).resolve().parents[1]

_FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)
_CURL = re.compile(r"curl\b[^\n]*?(?:\\\n[^\n]*?)*-d '(?P<body>[^']*)'", re.S)
_METHOD = re.compile(r"-X (?P<method>[A-Z]+)")
_URL = re.compile(r"https?://[^/\s]+(?P<path>/[^\s'\"]*)")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TASK_READ = re.compile(
    r"^curl -s (?:-H \"[^\"]*\" )?https?://[^/\s]+/v1/tasks/[0-9a-f-]{36}$", re.M
)
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)")


@dataclass(frozen=True)
class Example:
    where: str
    method: str
    path: str
    body: Any
    status: int | None  # documented, when an http block follows
    answer: Any  # documented body, when an http block follows


def examples(name: str) -> list[Example]:
    text = (PROJECT / name).read_text(encoding="utf-8")
    blocks = _FENCE.findall(text)
    found: list[Example] = []
    for index, (language, content) in enumerate(blocks):
        if language != "bash":
            continue
        for match in _CURL.finditer(content):
            command = match.group(0)
            method, url = _METHOD.search(command), _URL.search(command)
            assert method is not None, f"{name}: no method in {command!r}"
            assert url is not None, f"{name}: no URL in {command!r}"
            status, answer = None, None
            following = blocks[index + 1] if index + 1 < len(blocks) else ("", "")
            if following[0] == "http":
                head, _, payload = following[1].partition("\n\n")
                status = int(head.split()[1])
                answer = json.loads(payload) if payload.strip() else None
            body = json.loads(match["body"])
            found.append(Example(name, method["method"], url["path"], body, status, answer))
    return found


def task_reads(name: str) -> list[Any]:
    """The documented answers of plain ``GET /v1/tasks/<id>`` examples."""
    blocks = _FENCE.findall((PROJECT / name).read_text(encoding="utf-8"))
    return [
        json.loads(blocks[index + 1][1])
        for index, (language, content) in enumerate(blocks[:-1])
        if language == "bash" and _TASK_READ.search(content) and blocks[index + 1][0] == "json"
    ]


def _shape(text: str) -> str:
    return _TIME.sub("<time>", _UUID.sub("<id>", text))


def matches(documented: Any, actual: Any) -> bool:
    if isinstance(documented, str):
        if "<" in documented or documented == "...":
            return True
        return isinstance(actual, str) and _shape(documented) == _shape(actual)
    if isinstance(documented, dict):
        return (
            isinstance(actual, dict)
            and documented.keys() == actual.keys()
            and all(matches(value, actual[key]) for key, value in documented.items())
        )
    if isinstance(documented, list):
        return (
            isinstance(actual, list)
            and len(documented) == len(actual)
            and all(matches(d, a) for d, a in zip(documented, actual, strict=True))
        )
    # 1 and 1.0 are different JSON: a float documented where an int comes back misleads.
    return type(documented) is type(actual) and bool(documented == actual)


def test_the_docs_have_request_examples() -> None:
    # Guards the parser: an example it silently stopped finding would pass the test below.
    assert any(e.path == "/v1/analyze" for e in examples("README.md"))
    documented = [e for e in examples("docs/api.md") if e.status is not None]
    assert any(e.path == "/v1/analyze" and e.answer is not None for e in documented)
    assert len(task_reads("docs/api.md")) == 1


async def test_every_request_example_gets_the_documented_answer(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    first_analysis: str | None = None
    for example in [*examples("README.md"), *examples("docs/api.md")]:
        response = await client.request(
            example.method, example.path, json=example.body, headers=headers
        )
        if example.path == "/v1/analyze" and first_analysis is None:
            first_analysis = response.headers.get("location")
        label = f"{example.where}: {example.method} {example.path} {json.dumps(example.body)}"
        if example.status is None:
            assert response.is_success, f"{label} -> {response.status_code} {response.text}"
            continue
        assert response.status_code == example.status, f"{label} -> {response.text}"
        if example.answer is not None:
            assert matches(example.answer, response.json()), f"{label} -> {response.text}"
    assert first_analysis is not None
    for documented in task_reads("docs/api.md"):
        response = await client.get(f"{first_analysis}?wait=5", headers=headers)
        assert response.status_code == 200, response.text
        assert matches(documented, response.json()), f"docs/api.md's task read -> {response.text}"
