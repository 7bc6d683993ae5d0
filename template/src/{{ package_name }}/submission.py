"""A route class for the busiest POST routes: FastAPI documents them, a lean handler serves them.

FastAPI's per-request machinery (its request wrapper with two exit stacks, its
generic body reading, dependency solving, response-model validation and
serialisation) was about half of a task submission's CPU. ``SubmissionRoute``
keeps everything FastAPI derives from the endpoint's signature (the OpenAPI
operation, the body schema, the status code) and replaces only how a request is
served, for the one shape these routes have: a JSON body model, the ``Caller``
dependency and optionally the ``Response`` to set headers on. Anything else in
the signature is refused when the app is built, so a parameter added later
cannot be skipped silently. (``app.dependency_overrides`` does not reach these
routes; the caller dependency is a closure in create_app, which no one overrides.)

The steps and their order are FastAPI's, so answers do not change: the body's
JSON is parsed first (422 if it is not JSON), then the caller is authenticated
(401), then the body is validated (422 with ``body``-prefixed locations), and
the endpoint's answer is serialised as its declared model.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

_MISSING = object()
_MISSING_BODY = {"type": "missing", "loc": ("body",), "msg": "Field required"}


class SubmissionRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        if getattr(self, "max_body_size", None) is not None:  # FastAPI 0.16x
            raise TypeError(f"{path}: a SubmissionRoute takes no max_body_size (BodySizeLimit)")
        handle = self.get_route_handler()

        # In place of FastAPI's request_response(): no exit stacks (the signature
        # allows no yield dependencies) and no second exception wrapper (errors
        # reach the app's handlers through its ExceptionMiddleware, as before).
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await handle(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant = self.dependant
        unsupported = (
            dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.request_param_name
            or len(dependant.body_params) != 1
            or len(dependant.dependencies) != 1
            or dependant.dependencies[0].dependencies  # the caller takes the request only
            or not inspect.iscoroutinefunction(dependant.dependencies[0].call)
        )
        model = self.body_field.field_info.annotation if self.body_field else None
        answers = self.response_model
        caller = dependant.dependencies[0] if dependant.dependencies else None
        if (
            unsupported
            or caller is None
            or caller.name is None
            or not (_is_model(model) and _is_model(answers))
        ):
            raise TypeError(
                f"{self.path}: a SubmissionRoute endpoint takes one body model, the Caller "
                "dependency and optionally the Response, and declares a response model"
            )
        body_name = dependant.body_params[0].name
        get_caller: Callable[[Request], Awaitable[Any]] = caller.call  # type: ignore[assignment]
        caller_name: str = caller.name
        response_name = dependant.response_param_name
        endpoint = self.endpoint
        status_code = self.status_code or 200
        body_model: type[BaseModel] = model  # type: ignore[assignment]  # checked above
        answer_model: type[BaseModel] = answers
        to_json = answer_model.__pydantic_serializer__.to_json

        async def handle(request: Request) -> Response:
            try:
                raw = await _read_body(request.receive)
            except ClientDisconnect:
                raise HTTPException(400, "There was an error parsing the body") from None
            document = _json_body(raw, request.headers.get("content-type"))
            arguments: dict[str, Any] = {caller_name: await get_caller(request)}
            if document is _MISSING:
                raise RequestValidationError([_MISSING_BODY])
            try:
                # from_attributes as FastAPI validates: the same answers for non-objects.
                arguments[body_name] = body_model.model_validate(document, from_attributes=True)
            except ValidationError as exc:
                raise RequestValidationError(
                    [{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]
                ) from None
            own = _SubResponse()
            if response_name is not None:
                arguments[response_name] = own
            result = await endpoint(**arguments)
            if not isinstance(result, answer_model):
                result = answer_model.model_validate(result)
            return _JsonAnswer(to_json(result), own.status_code or status_code, own.raw_headers)

        return handle


async def _read_body(receive: Receive) -> bytes:
    """The body as ``Request.body()`` reads it, without its stream generator."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect


# Both Responses are built without Response.__init__, which renders a body and
# derives headers that are known here (and the sub-response's content-length then
# had to be deleted again): submissions ran about 5 % faster on a real server.
class _SubResponse(Response):
    """What the endpoint may set, as FastAPI's sub-response: headers and a status."""

    def __init__(self) -> None:
        self.status_code = None  # type: ignore[assignment]  # None: the route's own
        self.body = b""
        self.background = None
        self.raw_headers = []


class _JsonAnswer(Response):
    """The endpoint's answer, already serialised, with the headers it set."""

    media_type = "application/json"

    def __init__(self, body: bytes, status_code: int, extra: list[tuple[bytes, bytes]]) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = [
            (b"content-length", b"%d" % len(body)),
            (b"content-type", b"application/json"),
            *extra,
        ]


def _json_body(body: bytes, content_type: str | None) -> Any:
    """The body as FastAPI reads it for a JSON body model: parsed only when declared JSON.

    Only a JSON syntax error is answered here, before the caller is authenticated
    (as FastAPI does); a missing or non-JSON body fails validation afterwards.
    """
    if not body:
        return _MISSING
    if not _is_json(content_type):
        return body  # validation refuses it, as FastAPI's does
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error"}]
        ) from None
    except (ValueError, RecursionError):
        # Invalid UTF-8, an integer past int_max_str_digits, nesting past the
        # recursion limit: FastAPI answers these 400 too.
        raise HTTPException(400, "There was an error parsing the body") from None


def _is_model(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.partition(";")[0].strip().lower()
    maintype, _, subtype = media_type.partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))
