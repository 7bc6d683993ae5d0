"""The BLUX module: lifecycle, processors and the glue between the parts.

``ModuleCore`` owns the task manager, audit log and event publisher, all built
from the validated manifests and the settings. HTTP routes (api.py) only parse
requests and call its methods, so everything here is testable without HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import ValidationError

from . import analysis, redis_tasks, transform
from .audit import AuditLog
from .auth import Authenticator, build_authenticator
from .constants import MANIFEST_FILE, PACKAGE_NAME
from .datarefs import DataResolver
from .errors import (
    NotDeclared,
    NotImplementedApi,
    NotReady,
    PolicyViolation,
    RequestRejected,
    TaskNotFound,
)
from .events import EventPublisher
from .integration import PlatformIntegration
from .manifest import Manifests, load_manifests
from .models import AnalyzeRequest, EventRequest, TransformRequest, Values
from .policy import PolicyEnforcer
from .settings import Settings, env_name
from .store import Page, TaskStore
from .tasks import Runner, TaskBackend, TaskManager, TaskRecord, TaskStatus

logger = logging.getLogger(__name__)


class ModuleStatus(StrEnum):
    INITIALIZING = "initializing"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Actor:
    """Who asked, for audit records (at level detailed and above) and task ownership."""

    subject: str | None = None
    client: str | None = None
    method: str | None = None
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


SYSTEM = Actor(subject=None, client="internal")


@dataclass(frozen=True)
class Processor:
    """An API path served by a CPU-bound function run in a worker thread.

    ``run`` takes the validated input stored with the task (JSON types only)
    and must be pure: a task interrupted by a crash or a shutdown is run again
    from the same input on the next start.
    """

    operation: str
    summary: str
    run: Runner


def _run_analysis(payload: dict[str, Any]) -> dict[str, Any]:
    return analysis.analyze(payload["analysis_type"], payload["values"])


def _run_transform(payload: dict[str, Any]) -> dict[str, Any]:
    return transform.transform(
        payload["operation"],
        payload["values"],
        factor=payload["factor"],
        descending=payload["descending"],
    )


@dataclass(frozen=True)
class EventOutcome:
    status: Literal["acknowledged", "task_submitted"]
    task: TaskRecord | None = None


class ModuleCore:
    def __init__(self, settings: Settings, manifests: Manifests) -> None:
        self.settings = settings
        self.manifest = manifests.manifest
        self.policy = manifests.policy
        self.enforcer = PolicyEnforcer(self.manifest, self.policy)
        self.enforcer.check_limits(settings)
        self.authenticator: Authenticator = build_authenticator(
            self.manifest.authentication, settings
        )
        self.audit = AuditLog(
            settings.audit_file,
            level=self.enforcer.audit_level,
            module=self.manifest.name,
            record_raw_payloads=self.enforcer.may_record_raw_payloads,
        )
        # task_backend redis: tasks and events live in Redis, shared by every
        # replica; embedded: tasks in SQLite in DATA_DIR, events in the log only.
        self.redis: redis_tasks.Redis | None = None
        self.bus: redis_tasks.RedisEventBus | None = None
        if settings.task_backend == "redis":
            self.redis = redis_tasks.connect(settings)
            self.bus = redis_tasks.RedisEventBus(
                self.redis,
                stream=settings.events_stream,
                group=self.manifest.name,
                claim_timeout_seconds=settings.task_claim_timeout_seconds,
            )
        self.events = EventPublisher(
            self.enforcer, self.audit, sink=self.bus.publish if self.bus is not None else None
        )
        self.resolver = DataResolver(
            settings.inputs_dir,
            max_values=settings.max_values,
            max_bytes=settings.data_reference_max_bytes,
            timeout=settings.data_reference_timeout_seconds,
        )
        # blux-lite registration/discovery and blux-guard forwarding, when configured.
        self.platform = PlatformIntegration(settings, self.manifest, self.enforcer, self.audit)
        self._leaving: asyncio.Task[None] | None = None
        # Processors by API path. A path the manifest declares but that is not
        # registered here is answered 501 (see require_api).
        self.processors: dict[str, Processor] = {
            "/v1/analyze": Processor(
                "analysis", "statistical, pattern and trend analysis", _run_analysis
            ),
            "/v1/transform": Processor(
                "transform", ", ".join(transform.OPERATIONS), _run_transform
            ),
        }
        runners = {p.operation: p.run for p in self.processors.values()}
        self.store: TaskStore | None = None
        self.tasks: TaskBackend
        if self.redis is not None:
            self.tasks = redis_tasks.RedisTaskManager(
                self.redis,
                runners,
                prefix=settings.redis_key_prefix,
                max_concurrent=settings.max_concurrent_tasks,
                max_queued=settings.max_queued_tasks,
                timeout_seconds=settings.task_timeout_seconds,
                retention_seconds=settings.task_retention_seconds,
                claim_timeout_seconds=settings.task_claim_timeout_seconds,
                on_change=self._task_changed,
            )
        else:
            self.store = TaskStore(
                settings.task_store_file, retention_seconds=settings.task_retention_seconds
            )
            self.tasks = TaskManager(
                self.store,
                runners,
                max_concurrent=settings.max_concurrent_tasks,
                max_queued=settings.max_queued_tasks,
                timeout_seconds=settings.task_timeout_seconds,
                on_change=self._task_changed,
            )
        self.status = ModuleStatus.INITIALIZING

    @classmethod
    def from_settings(cls, settings: Settings) -> ModuleCore:
        """Validate the manifests first: ManifestError/StartupError refuse the start."""
        return cls(settings, load_manifests(settings.manifest_dir))

    # Lifecycle --------------------------------------------------------------
    async def initialize(self) -> None:
        await self.audit.open()
        await self.platform.start()  # background work only: never waits for the platform
        await asyncio.to_thread(self.settings.inputs_dir.mkdir, parents=True, exist_ok=True)
        if self.store is not None:
            await self.store.open()  # StartupError if the task database is unusable
        if self.redis is not None:
            await redis_tasks.ping(self.redis, self.settings)  # StartupError if unreachable
        await self.audit.record(
            "module.started",
            {
                "version": self.manifest.version,
                "authentication": self.manifest.authentication,
                "data_handling": self.manifest.data_handling,
                "max_concurrent_tasks": self.settings.max_concurrent_tasks,
            },
        )
        # Tasks accepted before a restart (or a crash) run before new ones.
        resumed = await self.tasks.start()
        if self.bus is not None:
            await self.bus.start(self._bus_event)
        self.status = ModuleStatus.READY
        logger.info(
            "%s %s ready (%d task(s) resumed)", self.manifest.name, self.manifest.version, resumed
        )

    def begin_drain(self) -> None:
        """Readiness 503 and new submissions refused from now on (SIGTERM's first step).

        Running tasks carry on; queued ones stay stored for the next start.
        """
        if self.status in (ModuleStatus.INITIALIZING, ModuleStatus.READY):
            self.status = ModuleStatus.DRAINING
        self.tasks.stop_accepting(self.settings.shutdown_grace_seconds)

    async def drain(self) -> bool:
        """Begin draining and wait, up to SHUTDOWN_GRACE_SECONDS, for running tasks."""
        self.begin_drain()
        self.leave_platform()
        return await self.tasks.drain(self.settings.shutdown_grace_seconds)

    def leave_platform(self) -> asyncio.Task[None]:
        """Deregister from blux-lite in the background, once: at the start of the drain,
        so no new work is routed here while tasks finish (at most PLATFORM_SHUTDOWN_SECONDS).
        """
        if self._leaving is None:
            self._leaving = asyncio.create_task(self.platform.leave())
        return self._leaving

    async def shutdown(self) -> None:
        if self.status is ModuleStatus.STOPPED:
            return
        self.begin_drain()
        leaving = self.leave_platform()
        # Same grace as drain(): the period started at the first of the two.
        if self.bus is not None:
            await self.bus.stop()
        await self.tasks.shutdown(self.settings.shutdown_grace_seconds)
        if self.store is not None:
            await self.store.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.audit.record("module.stopped", {"version": self.manifest.version})
        await leaving
        await self.platform.close()  # flushes the audit forwarder after the last record
        await self.resolver.aclose()
        self.status = ModuleStatus.STOPPED

    @property
    def ready(self) -> bool:
        return self.status is ModuleStatus.READY

    def health(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "module": self.manifest.name,
            "version": self.manifest.version,
            "active_tasks": self.tasks.active,
            "queued_tasks": self.tasks.queued,
        }

    def capabilities(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "module": m.name,
            "version": m.version,
            "type": m.type,
            "description": m.description,
            "capabilities": list(m.capabilities),
            "apis": {
                path: ("implemented" if path in self.processors else "not_implemented")
                for path in m.apis_provided
            },
            "analysis_types": sorted(analysis.ANALYSES),
            "transform_operations": list(transform.OPERATIONS),
            "events": {
                "consumes": sorted(e for e in m.events_consumes if self.enforcer.may_consume(e)),
                "produces": sorted(e for e in m.events_produces if self.enforcer.may_produce(e)),
            },
            "security": {
                "authentication": m.authentication,
                "audit_level": m.audit_level,
                "data_handling": m.data_handling,
            },
            "limits": {
                "max_concurrent_tasks": self.settings.max_concurrent_tasks,
                "max_queued_tasks": self.settings.max_queued_tasks,
                "max_values": self.settings.max_values,
                "max_request_bytes": self.policy.max_request_bytes,
            },
        }

    # Requests ---------------------------------------------------------------
    def require_api(self, path: str) -> Processor:
        if path not in self.manifest.apis_provided:
            raise NotDeclared(
                f"{path} is not provided by this module "
                f"(not in {MANIFEST_FILE} integration.apis.provided)"
            )
        processor = self.processors.get(path)
        if processor is None:
            raise NotImplementedApi(
                f"{path} is declared in {MANIFEST_FILE} integration.apis.provided but has "
                f"no processor yet: implement it in src/{PACKAGE_NAME}/ and register it in "
                f"ModuleCore.processors (src/{PACKAGE_NAME}/core.py)"
            )
        return processor

    def _require_ready(self) -> None:
        if self.status is ModuleStatus.DRAINING:
            raise NotReady("the module is shutting down and accepts no new tasks; retry later")
        if not self.ready:
            raise NotReady(f"the module is {self.status.value}; retry later")

    async def _values(self, data: Values | None, reference: str | None) -> list[float]:
        values = data.values if data is not None else await self.resolver.resolve(reference or "")
        if len(values) > self.settings.max_values:
            raise RequestRejected(
                f"{len(values)} values exceed the limit of {self.settings.max_values} "
                f"({env_name('max_values')})"
            )
        return values

    async def _submit(
        self,
        path: str,
        payload: dict[str, Any],
        values: list[float],
        details: Mapping[str, Any],
        actor: Actor,
    ) -> TaskRecord:
        """Store the task with ``payload`` (its processor's whole input) and queue it."""
        processor = self.require_api(path)
        self._require_ready()
        record = await self.tasks.submit(processor.operation, payload, owner=actor.subject)
        await self.audit.record(
            "task.submitted",
            {"task_id": str(record.id), "operation": processor.operation, **details},
            actor=actor.as_dict(),
            values=values,
        )
        return record

    async def submit_analysis(self, request: AnalyzeRequest, actor: Actor) -> TaskRecord:
        self.require_api("/v1/analyze")
        values = await self._values(request.data, request.data_reference)
        kind = request.analysis_type
        # Resolved values, not the reference: a re-run must not depend on the
        # referenced data still being there, or unchanged.
        return await self._submit(
            "/v1/analyze",
            {"analysis_type": kind, "values": values},
            values,
            {"analysis_type": kind, "source": _source(request.data_reference)},
            actor,
        )

    async def submit_transform(self, request: TransformRequest, actor: Actor) -> TaskRecord:
        self.require_api("/v1/transform")
        values = await self._values(request.data, request.data_reference)
        op, factor, descending = request.operation, request.factor, request.descending
        return await self._submit(
            "/v1/transform",
            {"operation": op, "values": values, "factor": factor, "descending": descending},
            values,
            {"transform": op, "source": _source(request.data_reference)},
            actor,
        )

    async def get_task(self, task_id: UUID, actor: Actor) -> TaskRecord:
        record = await self.tasks.get(task_id)
        # Another caller's task answers 404 like an unknown one: ids are not secrets
        # to guess at, but results belong to whoever submitted them.
        if record is None or (record.owner is not None and record.owner != actor.subject):
            raise TaskNotFound(
                f"task {task_id} not found (unknown, expired after "
                f"{env_name('task_retention_seconds')}, or not yours)"
            )
        return record

    async def list_tasks(
        self,
        actor: Actor,
        *,
        status: TaskStatus | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page:
        """The caller's tasks, newest first (without a subject: tasks submitted without one)."""
        return await self.tasks.page(owner=actor.subject, status=status, limit=limit, cursor=cursor)

    async def cancel_task(self, task_id: UUID, actor: Actor) -> TaskRecord:
        """Queued or running -> cancelled; 409 once finished, 404 like get_task."""
        await self.get_task(task_id, actor)  # 404 for unknown or someone else's
        by = f" by {actor.subject}" if actor.subject else ""
        try:
            record = await self.tasks.cancel(task_id, reason=f"cancelled{by} on request")
        except TaskNotFound:
            raise TaskNotFound(f"task {task_id} not found (expired meanwhile)") from None
        await self.audit.record(
            "task.cancel_requested",
            {"task_id": str(task_id), "operation": record.operation},
            actor=actor.as_dict(),
        )
        return record

    async def handle_event(self, event: EventRequest, actor: Actor) -> EventOutcome:
        try:
            self.enforcer.check_consume(event.type)
        except PolicyViolation as exc:
            await self.audit.record(
                "policy.violation",
                {"action": "consume", "event_type": event.type, "reason": exc.reason},
                actor=actor.as_dict(),
            )
            raise
        if event.type == "task.assigned":
            try:
                request = AnalyzeRequest.model_validate(event.payload)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
                    for err in exc.errors()
                )
                raise RequestRejected(
                    f"task.assigned payload is not an analysis request: {problems}"
                ) from None
            record = await self.submit_analysis(request, actor)
            return EventOutcome("task_submitted", record)
        self._require_ready()
        await self.audit.record(
            "event.consumed",
            {"event_type": event.type, "payload_keys": sorted(event.payload)},
            actor=actor.as_dict(),
        )
        return EventOutcome("acknowledged")

    async def _bus_event(self, event_type: str, payload: dict[str, Any], source: str) -> None:
        """An event from the Redis event stream; other modules' event types are not ours."""
        if event_type not in self.manifest.events_consumes:
            return
        event = EventRequest(type=event_type, payload=payload)
        await self.handle_event(event, Actor(subject=None, client=f"event-stream:{source}"))

    # Task transitions -------------------------------------------------------
    async def _task_changed(self, record: TaskRecord) -> None:
        data: dict[str, Any] = {"task_id": str(record.id), "operation": record.operation}
        if record.error is not None:
            data["error"] = record.error
        await self.audit.record(f"task.{record.status.value}", data)
        if record.status is TaskStatus.SUCCEEDED:
            payload = {"task_id": str(record.id), "operation": record.operation}
            await self.events.publish_if_allowed("task.completed", payload)
            if record.operation == "analysis":
                await self.events.publish_if_allowed("analysis.ready", payload)


def _source(reference: str | None) -> str:
    return "inline" if reference is None else "reference"
