"""A small, real HTTP server standing in for the platform services in tests.

It follows the contracts in docs/integration.md: the audit service's
``POST /v1/audit/records`` and the registry's modules and services paths (BLUX's
``/v1/modules`` and ``/v1/services`` unless told otherwise; Lift OS registers and
lists at ``/registry/modules``), and it also serves files for remote
``data_reference`` tests. It runs
``http.server`` in a thread on a free loopback port; each test gets its own.
Behaviour is programmed through plain attributes (fail the first N calls, ...).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Served:
    """A canned answer for GET <path>."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"
    delay: float = 0.0
    send_length: bool = True
    headers: dict[str, str] = field(default_factory=dict)


class PlatformStub:
    def __init__(self, modules_path: str, services_path: str) -> None:
        self.lock = threading.Lock()
        self.modules_path = modules_path
        self.services_path = services_path
        # audit service
        self.audit_records: list[dict[str, Any]] = []
        self.audit_attempts = 0
        self.audit_duplicates = 0
        self.audit_fail_first = 0
        # registry
        self.modules: dict[str, dict[str, Any]] = {}
        self.register_headers: list[str | None] = []  # Authorization of each registration
        self.register_attempts = 0
        self.register_fail_first = 0
        self.deregistered: list[str] = []
        self.services: dict[str, dict[str, Any]] = {}
        self.services_status = 200
        self.services_hits = 0
        # data references
        self.files: dict[str, Served] = {}
        self.fetched: list[str] = []  # paths of data references asked for, in order
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def audit_hashes(self) -> list[str]:
        with self.lock:
            return [str(record["hash"]) for record in self.audit_records]


def _handler(stub: PlatformStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes: without this, Nagle's
            # algorithm and delayed ACKs add ~40 ms to every keep-alive request.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def _answer(
            self, status: int, body: Any = None, *, content_type: str = "application/json"
        ) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length))

        def do_POST(self) -> None:
            body = self._body()
            if self.path == "/v1/audit/records":
                with stub.lock:
                    stub.audit_attempts += 1
                    if stub.audit_attempts <= stub.audit_fail_first:
                        status = 503
                    elif any(r["hash"] == body["hash"] for r in stub.audit_records):
                        stub.audit_duplicates += 1
                        status = 409
                    else:
                        stub.audit_records.append(body)
                        status = 201
                self._answer(status, {"stored": status == 201})
            elif self.path == stub.modules_path:
                with stub.lock:
                    stub.register_attempts += 1
                    stub.register_headers.append(self.headers.get("Authorization"))
                    if stub.register_attempts <= stub.register_fail_first:
                        self._answer(503, {"detail": "registry warming up"})
                        return
                    module_id = f"{body['name']}-{len(stub.modules) + 1}"
                    stub.modules[module_id] = body
                self._answer(201, {"module_id": module_id})
            else:
                self._answer(404, {"detail": "no such path"})

        def do_DELETE(self) -> None:
            prefix = stub.modules_path + "/"
            module_id = self.path[len(prefix) :] if self.path.startswith(prefix) else ""
            with stub.lock:
                found = stub.modules.pop(module_id, None) is not None
                if found:
                    stub.deregistered.append(module_id)
            if found:
                self._answer(204)
            else:
                self._answer(404, {"detail": "unknown module"})

        def do_GET(self) -> None:
            if self.path == stub.services_path:
                with stub.lock:
                    stub.services_hits += 1
                    status, services = stub.services_status, dict(stub.services)
                if status != 200:
                    self._answer(status, {"detail": "down"})
                elif stub.services_path == stub.modules_path:
                    # A registry that lists where it registers answers with a list.
                    listed = [{"name": name, **entry} for name, entry in services.items()]
                    self._answer(200, {"modules": listed})
                else:
                    self._answer(200, services)
                return
            with stub.lock:
                stub.fetched.append(self.path)
            served = stub.files.get(self.path)
            if served is None:
                self._answer(404, {"detail": "no such file"})
                return
            if served.delay:
                time.sleep(served.delay)
            self.send_response(served.status)
            self.send_header("Content-Type", served.content_type)
            for name, value in served.headers.items():
                self.send_header(name, value)
            if served.send_length:
                self.send_header("Content-Length", str(len(served.body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            # The client may give up early (size limit, timeout): expected in tests.
            with contextlib.suppress(OSError):
                self.wfile.write(served.body)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that hung up early (size limit, timeout): expected
        super().handle_error(request, client_address)


@contextmanager
def platform_stub(
    *, modules_path: str = "/v1/modules", services_path: str = "/v1/services"
) -> Iterator[PlatformStub]:
    stub = PlatformStub(modules_path, services_path)
    server = _Server(("127.0.0.1", 0), _handler(stub))
    stub.server = server
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
