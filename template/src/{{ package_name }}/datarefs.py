"""Resolve a ``data_reference`` to a list of numbers.

A reference is either

- a file path relative to ``DATA_DIR/inputs`` (absolute paths, ``..`` and
  symlinks leading outside that directory are refused), or
- an ``http://`` or ``https://`` URL whose host DATA_REFERENCE_HOSTS allows
  (any, by default), fetched with GET: the answer must be 200
  (redirects are not followed), arrive within DATA_REFERENCE_TIMEOUT_SECONDS
  and hold at most DATA_REFERENCE_MAX_BYTES (counted while streaming, after
  any content decoding, so neither a lying Content-Length nor a compressed
  bomb gets past it).

Either way the content must be JSON: a list of finite numbers or
``{"values": [...]}``. Every failure is a DataReferenceError (422) whose reason
names what failed. URLs are shown without credentials or query strings.

Remote references let callers make this module send GET requests. List the
hosts data may come from in DATA_REFERENCE_HOSTS, so that callers cannot point
it at internal services (a cloud metadata address, an admin port), and restrict
its egress too (network policy, proxy): a listed name can still resolve to any
address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
from pydantic import TypeAdapter, ValidationError

from .errors import DataReferenceError
from .models import FiniteNumber
from .settings import env_name
from .tls import client_context

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_VALUES: TypeAdapter[list[int | float]] = TypeAdapter(list[FiniteNumber])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def _shown(url: httpx.URL) -> str:
    """The URL for messages: no user:password@, no ?query (either may carry secrets)."""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


class DataResolver:
    def __init__(
        self,
        inputs_dir: Path,
        *,
        max_values: int,
        max_bytes: int,
        timeout: float,
        hosts: Sequence[str] = ("*",),
    ) -> None:
        self.inputs_dir = inputs_dir
        self.max_values = max_values
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.hosts = frozenset(hosts)  # as Settings checked them: lower case, no brackets
        self._client: httpx.AsyncClient | None = None

    # Local files ------------------------------------------------------------
    def path_for(self, reference: str) -> Path:
        """The file a reference names, or DataReferenceError if it is not allowed."""
        if _SCHEME.match(reference) and not re.match(r"^[A-Za-z]:[\\/]", reference):
            scheme = reference.split(":", 1)[0].lower()
            raise DataReferenceError(
                f"data reference scheme {scheme!r} is not supported "
                "(use http, https or a path relative to DATA_DIR/inputs)"
            )
        if "\\" in reference:
            raise DataReferenceError("data references use '/' separators only")
        if "\x00" in reference:
            raise DataReferenceError("data references must not contain NUL characters")
        relative = PurePosixPath(reference)
        if relative.is_absolute() or re.match(r"^[A-Za-z]:", reference):
            raise DataReferenceError("data references must be relative to DATA_DIR/inputs")
        if ".." in relative.parts:
            raise DataReferenceError("data references must not contain '..'")
        root = self.inputs_dir.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise DataReferenceError("the data reference leads outside DATA_DIR/inputs")
        return path

    def _too_large(self, label: str, size: str) -> DataReferenceError:
        return DataReferenceError(
            f"data reference {label} is too large: {size}; the limit is {self.max_bytes} "
            f"bytes ({env_name('data_reference_max_bytes')})"
        )

    def _read(self, reference: str) -> list[float]:
        label = repr(reference)
        try:
            path = self.path_for(reference)
            if not path.is_file():
                raise DataReferenceError(f"data reference {label} not found in DATA_DIR/inputs")
            size = path.stat().st_size
            if size > self.max_bytes:
                raise self._too_large(label, f"{size} bytes")
            content = path.read_bytes()
        except OSError as exc:  # a name too long, a file unreadable to the module, ...
            reason = exc.strerror or str(exc)
            raise DataReferenceError(f"data reference {label} cannot be read: {reason}") from None
        return self._parse(content, label)

    def _parse(self, content: bytes, label: str) -> list[float]:
        try:
            document = json.loads(content, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataReferenceError(f"data reference {label} is not valid JSON: {exc}") from None
        except RecursionError:
            raise DataReferenceError(f"data reference {label} is nested too deeply") from None
        if isinstance(document, dict) and set(document) == {"values"}:
            document = document["values"]
        try:
            return _VALUES.validate_python(document)
        except ValidationError:
            raise DataReferenceError(
                f"data reference {label} must hold a JSON list of finite numbers "
                'or {"values": [...]}'
            ) from None

    # Remote URLs -----------------------------------------------------------
    def host_allowed(self, host: str) -> bool:
        """Whether DATA_REFERENCE_HOSTS lets a URL name ``host`` (ASCII: IDNA-encoded)."""
        host = host.lower().rstrip(".")
        if "*" in self.hosts or host in self.hosts:
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:  # a name: ".example.com" rules cover its subdomains
            return any(rule[0] == "." and host.endswith(rule) for rule in self.hosts)
        return False  # an address is allowed by name only: ".0.0.1" is no rule for 127.0.0.1

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # Pooled across requests; created on first use, inside the event loop.
            self._client = httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,
                headers={"Accept": "application/json"},
                verify=client_context(),
            )
        return self._client

    async def _fetch(self, reference: str) -> list[float]:
        try:
            url = httpx.URL(reference)
            host = url.host  # decoded lazily: an invalid IDNA label fails here
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise DataReferenceError(f"data reference is not a valid URL: {exc}") from None
        if not host:
            raise DataReferenceError("data reference URL has no host")
        label = _shown(url)
        if not self.host_allowed(url.raw_host.decode("ascii")):  # IDNA: xn--... names
            raise DataReferenceError(
                f"data reference {label}: host {host!r} is not allowed "
                f"({env_name('data_reference_hosts')})"
            )
        chunks: list[bytes] = []
        try:
            # The client's timeout bounds each step; this bounds the whole
            # download, so a server trickling bytes cannot hold a request open.
            async with (
                asyncio.timeout(self.timeout),
                self._http().stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    note = " (redirects are not followed)" if response.is_redirect else ""
                    raise DataReferenceError(
                        f"data reference {label} answered HTTP {response.status_code}{note}"
                    )
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_large(label, f"{declared} bytes announced")
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large(label, f"more than {self.max_bytes} bytes sent")
                    chunks.append(chunk)
        except (TimeoutError, httpx.TimeoutException):
            raise DataReferenceError(
                f"data reference {label} timed out after {self.timeout:g}s "
                f"({env_name('data_reference_timeout_seconds')})"
            ) from None
        except httpx.ConnectError as exc:
            raise DataReferenceError(f"data reference {label} is unreachable: {exc}") from None
        except httpx.HTTPError as exc:
            raise DataReferenceError(
                f"data reference {label} could not be fetched: {type(exc).__name__}: {exc}"
            ) from None
        return self._parse(b"".join(chunks), label)

    async def resolve(self, reference: str) -> list[float]:
        if re.match(r"^https?://", reference, re.IGNORECASE):
            return await self._fetch(reference)
        # File I/O in a thread: a slow disk must not stall the event loop.
        return await asyncio.to_thread(self._read, reference)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
