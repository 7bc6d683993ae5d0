"""One TLS context for every outgoing HTTP client of this process.

httpx builds a new SSL context for each client it creates, loading the whole CA
bundle every time (about 40 ms of CPU here). The registry, discovery, audit
forwarding, data-reference and KSE clients share this one instead: the context
httpx itself would build (certifi's bundle, or SSL_CERT_FILE / SSL_CERT_DIR when
set), made on first use. An SSLContext is meant to be shared by connections.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def client_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
