"""The module's links to the platform: blux-lite (registry) and blux-guard (audit).

Each link is optional. Without ``BLUX_LITE_URL`` the module does not register
and discovery lookups answer PlatformUnavailable; without ``BLUX_GUARD_URL`` the
audit trail stays in the local file only. Either way it is logged once at start
and the module runs alone. Nothing here can delay start-up: registration and
forwarding run in background tasks, and shutdown waits for them at most
``PLATFORM_SHUTDOWN_SECONDS`` each.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from .audit import AuditLog
from .forwarding import AuditForwarder
from .manifest import Manifest
from .policy import PolicyEnforcer
from .registry import DiscoveryClient, RegistryClient
from .settings import Settings, env_name

logger = logging.getLogger(__name__)

_ANY_ADDRESS = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 - compared, not bound


def public_endpoint(settings: Settings) -> str:
    """Where other services reach this module: MODULE_PUBLIC_URL, else http://HOST:PORT."""
    if settings.module_public_url is not None:
        return str(settings.module_public_url).rstrip("/")
    host = settings.host
    if host in _ANY_ADDRESS:
        # Bound to every interface: the machine's name is the best guess.
        host = socket.gethostname()
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def registration(
    settings: Settings, manifest: Manifest, enforcer: PolicyEnforcer
) -> dict[str, Any]:
    """The body of POST /v1/modules: what the manifest declares and the policy allows."""
    return {
        "name": manifest.name,
        "version": manifest.version,
        "type": manifest.type,
        "endpoint": public_endpoint(settings),
        "capabilities": list(manifest.capabilities),
        "apis": {
            "provided": list(manifest.apis_provided),
            "required": list(manifest.apis_required),
        },
        "events": {
            "consumes": [e for e in manifest.events_consumes if enforcer.may_consume(e)],
            "produces": [e for e in manifest.events_produces if enforcer.may_produce(e)],
        },
    }


class PlatformIntegration:
    def __init__(
        self,
        settings: Settings,
        manifest: Manifest,
        enforcer: PolicyEnforcer,
        audit: AuditLog,
    ) -> None:
        self.settings = settings
        self.audit = audit
        self.registry: RegistryClient | None = None
        if settings.blux_lite_url is not None:
            self.registry = RegistryClient(
                str(settings.blux_lite_url),
                registration(settings, manifest, enforcer),
                timeout=settings.platform_timeout_seconds,
                retry_initial=settings.platform_retry_initial_seconds,
                retry_max=settings.platform_retry_max_seconds,
            )
        self.discovery = DiscoveryClient(
            self.registry,
            ttl=settings.discovery_ttl_seconds,
            setting_name=env_name("blux_lite_url"),
        )
        self.forwarder: AuditForwarder | None = None
        if settings.blux_guard_url is not None and audit.enabled:
            self.forwarder = AuditForwarder(
                str(settings.blux_guard_url),
                settings.audit_file,
                settings.audit_cursor_file,
                timeout=settings.platform_timeout_seconds,
                retry_initial=settings.platform_retry_initial_seconds,
                retry_max=settings.platform_retry_max_seconds,
            )

    async def start(self) -> None:
        """Call after the audit log is open and before its first record. Returns at once."""
        if self.registry is None:
            logger.info(
                "%s not set: not registering with blux-lite, service discovery off; running alone",
                env_name("blux_lite_url"),
            )
        else:
            self.registry.start()
        if self.forwarder is not None:
            await self.forwarder.start()
            self.audit.on_append = self.forwarder.offer
        elif self.settings.blux_guard_url is not None:
            logger.info("audit level none: nothing to forward to blux-guard")
        elif self.audit.enabled:
            logger.info(
                "%s not set: the audit trail is kept in %s only",
                env_name("blux_guard_url"),
                self.audit.path,
            )

    async def leave(self) -> None:
        """Deregister (first thing at shutdown, so no new work is routed here)."""
        if self.registry is not None:
            await self.registry.stop(self.settings.platform_shutdown_seconds)

    async def close(self) -> None:
        """Flush the audit forwarder (after the last audit record)."""
        if self.forwarder is not None:
            await self.forwarder.stop(self.settings.platform_shutdown_seconds)
            self.audit.on_append = None

    def status(self) -> dict[str, Any]:
        return {
            "registry": self.registry.status() if self.registry else None,
            "audit_forwarding": self.forwarder.status() if self.forwarder else None,
        }


__all__ = ["PlatformIntegration", "public_endpoint", "registration"]
