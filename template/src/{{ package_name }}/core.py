"""The BLUX module: lifecycle, processors and the glue between the parts.

``ModuleCore`` owns the task manager, audit log and event publisher, all built
from the validated manifests and the settings. HTTP routes (api.py) only parse
requests and call its methods, so everything here is testable without HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import ValidationError

from . import analysis, transform
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
from .manifest import Manifests, load_manifests
from .models import AnalyzeRequest, EventRequest, TransformRequest, Values
from .policy import PolicyEnforcer
from .settings import Settings, env_name
from .tasks import TaskManager, TaskRecord, TaskStatus

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
    """An API path served by a CPU-bound function run in a worker thread."""

    operation: str
    summary: str


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
        self.events = EventPublisher(self.enforcer, self.audit)
        self.resolver = DataResolver(settings.inputs_dir, max_values=settings.max_values)
        self.tasks = TaskManager(
            max_concurrent=settings.max_concurrent_tasks,
            max_queued=settings.max_queued_tasks,
            timeout_seconds=settings.task_timeout_seconds,
            retention_seconds=settings.task_retention_seconds,
            on_change=self._task_changed,
        )
        # Processors by API path. A path the manifest declares but that is not
        # registered here is answered 501 (see require_api).
        self.processors: dict[str, Processor] = {
            "/v1/analyze": Processor("analysis", "statistical, pattern and trend analysis"),
            "/v1/transform": Processor("transform", ", ".join(transform.OPERATIONS)),
        }
        self.status = ModuleStatus.INITIALIZING

    @classmethod
    def from_settings(cls, settings: Settings) -> ModuleCore:
        """Validate the manifests first: ManifestError/StartupError refuse the start."""
        return cls(settings, load_manifests(settings.manifest_dir))

    # Lifecycle --------------------------------------------------------------
    async def initialize(self) -> None:
        await self.audit.open()
        await asyncio.to_thread(self.settings.inputs_dir.mkdir, parents=True, exist_ok=True)
        self.status = ModuleStatus.READY
        await self.audit.record(
            "module.started",
            {
                "version": self.manifest.version,
                "authentication": self.manifest.authentication,
                "data_handling": self.manifest.data_handling,
                "max_concurrent_tasks": self.settings.max_concurrent_tasks,
            },
        )
        logger.info("%s %s ready", self.manifest.name, self.manifest.version)

    async def shutdown(self) -> None:
        if self.status is ModuleStatus.STOPPED:
            return
        self.status = ModuleStatus.DRAINING
        await self.tasks.shutdown(self.settings.shutdown_grace_seconds)
        await self.audit.record("module.stopped", {"version": self.manifest.version})
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
        run: Callable[[], dict[str, Any]],
        values: list[float],
        details: Mapping[str, Any],
        actor: Actor,
    ) -> TaskRecord:
        processor = self.require_api(path)
        self._require_ready()
        record = self.tasks.submit(
            processor.operation,
            lambda: asyncio.to_thread(run),  # CPU work off the event loop
            owner=actor.subject,
        )
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
        return await self._submit(
            "/v1/analyze",
            lambda: analysis.analyze(kind, values),
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
            lambda: transform.transform(op, values, factor=factor, descending=descending),
            values,
            {"transform": op, "source": _source(request.data_reference)},
            actor,
        )

    def get_task(self, task_id: UUID, actor: Actor) -> TaskRecord:
        record = self.tasks.get(task_id)
        # Another caller's task answers 404 like an unknown one: ids are not secrets
        # to guess at, but results belong to whoever submitted them.
        if record is None or (record.owner is not None and record.owner != actor.subject):
            raise TaskNotFound(
                f"task {task_id} not found (unknown, expired after "
                f"{env_name('task_retention_seconds')}, or not yours)"
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
