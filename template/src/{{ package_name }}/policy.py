"""Run-time enforcement of the module's policy.

The manifest says what the module *can* do; the policy says what the operator
*allows* here (BLUX: doctrine.policy.json; Lift OS: module.json itself, so the
policy is what it declares). Every check reads both, so a policy can narrow but
never widen.
"""

from __future__ import annotations

from .audit import AuditLevel
from .errors import PolicyViolation, StartupError
from .manifest import Manifest, Policy
from .settings import Settings, env_name


class PolicyEnforcer:
    def __init__(self, manifest: Manifest, policy: Policy) -> None:
        self.manifest = manifest
        self.policy = policy

    # Events -----------------------------------------------------------------
    def may_produce(self, event_type: str) -> bool:
        return event_type in self.manifest.events_produces and event_type in self.policy.may_produce

    def may_consume(self, event_type: str) -> bool:
        return event_type in self.manifest.events_consumes and event_type in self.policy.may_consume

    def check_produce(self, event_type: str) -> None:
        if event_type not in self.manifest.events_produces:
            raise PolicyViolation(
                f"event {event_type!r} is not declared in the manifest's "
                "integration.events.produces"
            )
        if event_type not in self.policy.may_produce:
            raise PolicyViolation(
                f"event {event_type!r} is not allowed by {self.policy.source} events.may_produce"
            )

    def check_consume(self, event_type: str) -> None:
        if event_type not in self.manifest.events_consumes:
            raise PolicyViolation(
                f"event {event_type!r} is not declared in the manifest's "
                "integration.events.consumes"
            )
        if event_type not in self.policy.may_consume:
            raise PolicyViolation(
                f"event {event_type!r} is not allowed by {self.policy.source} events.may_consume"
            )

    # Audit ------------------------------------------------------------------
    @property
    def audit_level(self) -> AuditLevel:
        return AuditLevel.parse(self.policy.audit_level)

    @property
    def may_record_raw_payloads(self) -> bool:
        # Belt and braces: the cross-document check already refuses
        # record_payloads with encrypted data handling.
        return (
            self.policy.record_payloads
            and self.manifest.data_handling != "encrypted"
            and self.audit_level >= AuditLevel.VERBOSE
        )

    # Limits -----------------------------------------------------------------
    @property
    def max_request_bytes(self) -> int:
        return self.policy.max_request_bytes

    def check_limits(self, settings: Settings) -> None:
        """Refuse to start when the settings exceed what the policy allows."""
        limit = self.policy.max_concurrent_tasks
        if settings.max_concurrent_tasks > limit:
            raise StartupError(
                f"{env_name('max_concurrent_tasks')}={settings.max_concurrent_tasks} exceeds "
                f"the limit {self.policy.max_tasks_field}={limit} "
                f"({settings.manifest_dir / self.policy.source}); "
                "lower the setting or raise the limit"
            )
