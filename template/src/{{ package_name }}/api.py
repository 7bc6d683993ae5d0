"""HTTP API: thin routes over ModuleCore.

``create_app(settings)`` builds the app; the lifespan loads and validates the
manifests (refusing to start on any problem), initialises the core and shuts it
down gracefully. Domain errors become 4xx/503 answers with a reason; no bad
request ends in a 500.

No ``from __future__ import annotations`` here: FastAPI reads the route
signatures at run time, and the dependencies are closures inside create_app.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from . import observability
from .auth import AuthError
from .constants import MODULE_NAME, MODULE_VERSION
from .core import Actor, ModuleCore
from .errors import ModuleError, NotReady, QueueFullError
from .models import (
    AnalyzeRequest,
    EventAccepted,
    EventRequest,
    Health,
    Problem,
    TaskAccepted,
    TaskPage,
    TaskView,
    TransformRequest,
)
from .settings import Settings
from .tasks import TaskRecord, TaskStatus

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (401, 403, 404, 413, 422, 501, 503)
}


class _CoreSlot:
    """Holds the core between start-up and shutdown; routes get it injected."""

    core: ModuleCore | None = None


def _accepted(record: TaskRecord, response: Response) -> TaskAccepted:
    location = f"/v1/tasks/{record.id}"
    response.headers["Location"] = location
    return TaskAccepted(
        task_id=str(record.id),
        # The status at acceptance. The task may already be running by the time
        # this answer is sent; GET Location always tells the current truth.
        status=TaskStatus.QUEUED.value,
        operation=record.operation,
        created_at=record.created_at.isoformat(),
        location=location,
    )


def _install_error_handlers(app: FastAPI, realm: str) -> None:
    async def module_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ModuleError)  # noqa: S101 - registered for ModuleError only
        headers = {}
        if isinstance(exc, QueueFullError):
            headers["Retry-After"] = str(exc.retry_after)
        return JSONResponse({"detail": exc.reason}, status_code=exc.status_code, headers=headers)

    async def auth_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthError)  # noqa: S101 - registered for AuthError only
        # RFC 6750 section 3: no error code when no token was presented.
        challenge = f'Bearer realm="{realm}"'
        if exc.token_presented:
            challenge += ', error="invalid_token"'
        return JSONResponse(
            {"detail": exc.reason}, status_code=401, headers={"WWW-Authenticate": challenge}
        )

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        # Only location, message and type: echoing the input back could repeat
        # secrets, and a NaN input would make the answer itself unserialisable.
        errors = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    app.add_exception_handler(ModuleError, module_error)
    app.add_exception_handler(AuthError, auth_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()
    slot = _CoreSlot()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Manifests first: an invalid manifest, a policy the settings exceed or
        # a missing JWT secret stops the start here, with the reason.
        core = ModuleCore.from_settings(settings)
        await core.initialize()
        slot.core = core
        app.state.core = core  # for operators' tooling and tests; routes use the slot
        try:
            yield
        finally:
            await core.shutdown()

    app = FastAPI(
        title=MODULE_NAME,
        version=MODULE_VERSION,
        lifespan=lifespan,
        responses=_PROBLEMS,
    )
    _install_error_handlers(app, MODULE_NAME)
    observability.install(app, settings, lambda: slot.core)

    async def get_core() -> ModuleCore:  # async: a sync dependency costs a thread hop
        if slot.core is None:
            raise NotReady("the module is starting; retry shortly")
        return slot.core

    bearer = HTTPBearer(auto_error=False, description="JWT issued by the platform")

    async def get_actor(
        request: Request,
        core: Annotated[ModuleCore, Depends(get_core)],
        # Declared for the OpenAPI security scheme; the decision reads the raw
        # header so a malformed one is refused rather than treated as absent.
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Actor:
        principal = core.authenticator.authenticate(request.headers.get("authorization"))
        return Actor(
            subject=principal.subject,
            client=request.client.host if request.client else None,
            method=request.method,
            path=request.url.path,
        )

    CoreDep = Annotated[ModuleCore, Depends(get_core)]
    ActorDep = Annotated[Actor, Depends(get_actor)]

    @app.get("/health", response_model=Health, tags=["probes"])
    async def health() -> dict[str, Any]:
        """Liveness: 200 while the process serves requests."""
        if slot.core is None:
            return {
                "status": "initializing",
                "module": MODULE_NAME,
                "version": MODULE_VERSION,
                "active_tasks": 0,
                "queued_tasks": 0,
            }
        return slot.core.health()

    @app.get("/ready", tags=["probes"])
    async def ready() -> JSONResponse:
        """Readiness: 200 once initialised, 503 while starting or draining."""
        status = slot.core.status.value if slot.core else "initializing"
        ok = slot.core is not None and slot.core.ready
        return JSONResponse({"status": status}, status_code=200 if ok else 503)

    @app.get("/capabilities", tags=["probes"])
    async def capabilities(core: CoreDep) -> dict[str, Any]:
        return core.capabilities()

    @app.post("/v1/analyze", status_code=202, response_model=TaskAccepted, tags=["tasks"])
    async def analyze(
        body: AnalyzeRequest, response: Response, core: CoreDep, actor: ActorDep
    ) -> TaskAccepted:
        """Queue an analysis; poll the Location for the result."""
        return _accepted(await core.submit_analysis(body, actor), response)

    @app.post("/v1/transform", status_code=202, response_model=TaskAccepted, tags=["tasks"])
    async def transform(
        body: TransformRequest, response: Response, core: CoreDep, actor: ActorDep
    ) -> TaskAccepted:
        """Queue a transformation (404 when the manifest does not declare /v1/transform)."""
        return _accepted(await core.submit_transform(body, actor), response)

    @app.get("/v1/tasks", response_model=TaskPage, tags=["tasks"])
    async def list_tasks(
        core: CoreDep,
        actor: ActorDep,
        status: Annotated[TaskStatus | None, Query(description="Only tasks in this state")] = None,
        limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 20,
        cursor: Annotated[
            str | None, Query(max_length=100, description="next_cursor of the previous page")
        ] = None,
    ) -> dict[str, Any]:
        """The caller's tasks, newest first, a page at a time."""
        page = await core.list_tasks(actor, status=status, limit=limit, cursor=cursor)
        return {
            "tasks": [record.to_dict() for record in page.records],
            "next_cursor": page.next_cursor,
        }

    @app.get("/v1/tasks/{task_id}", response_model=TaskView, tags=["tasks"])
    async def get_task(task_id: UUID, core: CoreDep, actor: ActorDep) -> dict[str, Any]:
        """The task's true status, and its result or error once finished."""
        return (await core.get_task(task_id, actor)).to_dict()

    @app.post(
        "/v1/tasks/{task_id}/cancel",
        response_model=TaskView,
        tags=["tasks"],
        responses={409: {"model": Problem}},
    )
    async def cancel_task(task_id: UUID, core: CoreDep, actor: ActorDep) -> dict[str, Any]:
        """Cancel a queued or running task (409 once it has finished)."""
        return (await core.cancel_task(task_id, actor)).to_dict()

    @app.post("/v1/events", status_code=202, response_model=EventAccepted, tags=["events"])
    async def consume_event(
        body: EventRequest, response: Response, core: CoreDep, actor: ActorDep
    ) -> EventAccepted:
        """Consume a platform event the manifest declares and the policy allows."""
        outcome = await core.handle_event(body, actor)
        task = _accepted(outcome.task, response) if outcome.task is not None else None
        return EventAccepted(type=body.type, status=outcome.status, task=task)

    @app.api_route(
        "/{version:str}/{rest:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    async def other_api(
        version: str, rest: str, request: Request, core: CoreDep, actor: ActorDep
    ) -> Response:
        """Declared-but-unimplemented APIs (any /vN/...) answer 501, undeclared ones 404."""
        path = f"/{version}/{rest}"
        core.require_api(path)
        return JSONResponse(
            {"detail": f"method {request.method} not allowed on {path}"},
            status_code=405,
            headers={"Allow": "POST"},
        )

    return app
