"""The platform registry: registration and service discovery.

Contract with the registry (docs/integration.md; paths in constants.py):
  POST   {registry}{REGISTRY_MODULES_PATH}             body: integration.registration()
         -> 201 (or 200) {"module_id": "..."}
  DELETE {registry}{REGISTRY_MODULES_PATH}/{module_id} -> 204 (404: already gone, fine)
  GET    {registry}{REGISTRY_SERVICES_PATH}            -> 200, the registered services as
         {"<name>": {"endpoint": "<url>", ...}}, or a list (alone or under "modules" or
         "services") of {"name": ..., "endpoint": ...}
Every call carries ``Authorization: Bearer <token>`` when a service token is set.

Registration runs in a background task with exponential back-off and never
delays start-up. Readiness does not wait for it either: /ready answers "can
this process serve?", which a registry outage does not change; coupling the two
would let one registry incident take every module out of service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .constants import REGISTRY_MODULES_PATH, REGISTRY_NAME, REGISTRY_SERVICES_PATH
from .errors import PlatformUnavailable
from .retry import backoff_delays
from .tls import client_context

logger = logging.getLogger(__name__)

MODULES_PATH = REGISTRY_MODULES_PATH
SERVICES_PATH = REGISTRY_SERVICES_PATH


def _problem(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return f"HTTP {response.status_code}" + (f": {text[:200]}" if text else "")


class RegistryClient:
    """Registers this module with the registry, deregisters it, and reads the service list."""

    def __init__(
        self,
        base_url: str,
        registration: Mapping[str, Any],
        *,
        timeout: float,
        retry_initial: float,
        retry_max: float,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.registration = dict(registration)
        self.timeout = timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.module_id: str | None = None
        self.attempts = 0
        self.registered = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # One pooled client for every registry call; created inside the event loop.
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=self.timeout,
                headers=self._headers,
                verify=client_context(),
            )
        return self._client

    def start(self) -> None:
        """Begin registering in the background; returns at once."""
        self._task = asyncio.create_task(self._register(), name="registration")

    async def _register(self) -> None:
        delays = backoff_delays(self.retry_initial, self.retry_max)
        while True:
            self.attempts += 1
            try:
                response = await self._http().post(MODULES_PATH, json=self.registration)
                module_id = _module_id(response) if response.status_code in (200, 201) else None
                if module_id is not None:
                    self.module_id = module_id
                    self.registered.set()
                    logger.info(
                        "registered with %s at %s as %s", REGISTRY_NAME, self.base_url, module_id
                    )
                    return
                problem = (
                    _problem(response)
                    if response.status_code not in (200, 201)
                    else "answer without a module_id"
                )
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            delay = next(delays)
            log = logger.warning if self.attempts == 1 or self.attempts % 10 == 0 else logger.debug
            log(
                "registration with %s at %s failed (%s, attempt %d); retrying in %.2fs",
                REGISTRY_NAME,
                self.base_url,
                problem,
                self.attempts,
                delay,
            )
            await asyncio.sleep(delay)

    async def stop(self, deadline: float) -> None:
        """Stop registering; deregister if registered, waiting at most ``deadline`` seconds."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.module_id is not None:
            module_id = self.module_id
            try:
                async with asyncio.timeout(deadline):
                    response = await self._http().delete(f"{MODULES_PATH}/{module_id}")
                if response.status_code in (200, 202, 204, 404):
                    logger.info("deregistered %s from %s", module_id, REGISTRY_NAME)
                    self.module_id = None
                    self.registered.clear()
                else:
                    logger.warning("deregistration of %s: %s", module_id, _problem(response))
            except (httpx.HTTPError, TimeoutError) as exc:
                logger.warning(
                    "deregistration of %s from %s failed (%s); the registry will "
                    "keep listing it until it notices",
                    module_id,
                    REGISTRY_NAME,
                    type(exc).__name__,
                )
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def fetch_services(self) -> dict[str, dict[str, Any]]:
        """GET the service list once; httpx.HTTPError or ValueError when it cannot."""
        response = await self._http().get(SERVICES_PATH)
        if response.status_code != 200:
            raise ValueError(_problem(response))
        return service_entries(response.json())

    def status(self) -> dict[str, Any]:
        return {
            "url": self.base_url,
            "registered": self.module_id is not None,
            "module_id": self.module_id,
            "attempts": self.attempts,
        }


def service_entries(body: Any) -> dict[str, dict[str, Any]]:
    """The service list by name, from either shape the contract allows; ValueError otherwise."""
    if isinstance(body, dict):
        listed = body.get("modules", body.get("services"))
        if isinstance(listed, list):
            body = listed
    if isinstance(body, list):
        if all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in body):
            body = {entry["name"]: entry for entry in body}
        else:
            raise ValueError('listed services need a "name"')
    if not isinstance(body, dict) or not all(
        isinstance(entry, dict) and isinstance(entry.get("endpoint"), str)
        for entry in body.values()
    ):
        raise ValueError('answer is not {"<name>": {"endpoint": "<url>", ...}} or a list of them')
    return {str(name): dict(entry) for name, entry in body.items()}


def _module_id(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get("module_id") if isinstance(body, dict) else None
    return str(value) if isinstance(value, str | int) and str(value) else None


@dataclass(frozen=True)
class Services:
    """The registry's service list as last fetched; ``stale`` when the registry failed since."""

    entries: Mapping[str, Mapping[str, Any]]
    fetched_at: float
    stale: bool = False
    error: str | None = None

    def endpoint(self, name: str) -> str:
        entry = self.entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self.entries)) or "none"
            raise PlatformUnavailable(
                f"service {name!r} is not registered with {REGISTRY_NAME} (known: {known})"
            )
        return str(entry["endpoint"])


class DiscoveryClient:
    """Service discovery with a TTL cache that falls back on the last good answer.

    Within ``ttl`` seconds of a fetch the cached list is served. When the
    registry then fails, the last good list is served marked ``stale`` (and the
    registry is asked again only after another ``ttl``); with no good answer ever,
    PlatformUnavailable explains why. Without a registry URL every lookup raises
    PlatformUnavailable saying so.
    """

    def __init__(
        self,
        registry: RegistryClient | None,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        setting_name: str = "the registry URL",
    ) -> None:
        self.registry = registry
        self.ttl = ttl
        self.clock = clock
        self.setting_name = setting_name
        self.fetches = 0
        self._cache: Services | None = None
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()

    async def services(self) -> Services:
        if self.registry is None:
            raise PlatformUnavailable(
                f"service discovery is off: {self.setting_name} is not set, "
                "so this module runs alone"
            )
        async with self._lock:  # one fetch at a time; waiters then get its answer
            now = self.clock()
            cache = self._cache
            if cache is not None:
                if now - cache.fetched_at < self.ttl:
                    return cache
                if cache.stale and self._failed_at is not None and now - self._failed_at < self.ttl:
                    return cache
            self.fetches += 1
            try:
                entries = await self.registry.fetch_services()
            except (httpx.HTTPError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self._failed_at = now
                if cache is None:
                    raise PlatformUnavailable(
                        f"service discovery: {REGISTRY_NAME} at {self.registry.base_url} "
                        f"cannot answer ({problem}) and there is no earlier answer to fall "
                        "back on"
                    ) from None
                logger.warning(
                    "service discovery: %s failed (%s); serving the list from %.0fs ago",
                    REGISTRY_NAME,
                    problem,
                    now - cache.fetched_at,
                )
                self._cache = Services(cache.entries, cache.fetched_at, stale=True, error=problem)
                return self._cache
            self._failed_at = None
            self._cache = Services(entries, now)
            return self._cache

    async def endpoint(self, name: str) -> str:
        return (await self.services()).endpoint(name)
