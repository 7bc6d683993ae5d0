"""Resolve a ``data_reference`` to a list of numbers.

A reference is a file path relative to ``DATA_DIR/inputs`` holding JSON: either
a list of numbers or ``{"values": [...]}``. Absolute paths, ``..`` and symlinks
leading outside that directory are refused. Remote (http/https) references are
refused too: fetching them is not implemented, and saying so beats pretending.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .errors import DataReferenceError
from .models import FiniteNumber

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_VALUES: TypeAdapter[list[int | float]] = TypeAdapter(list[FiniteNumber])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


class DataResolver:
    def __init__(self, inputs_dir: Path, *, max_values: int) -> None:
        self.inputs_dir = inputs_dir
        self.max_values = max_values
        # A JSON number plus separator rarely needs more than 32 bytes.
        self.max_bytes = 32 * max_values + 4096

    def path_for(self, reference: str) -> Path:
        """The file a reference names, or DataReferenceError if it is not allowed."""
        if _SCHEME.match(reference) and not re.match(r"^[A-Za-z]:[\\/]", reference):
            scheme = reference.split(":", 1)[0].lower()
            if scheme in ("http", "https"):
                raise DataReferenceError(
                    "remote data references are not supported by this module yet; "
                    "place the file under DATA_DIR/inputs and pass its relative path"
                )
            raise DataReferenceError(f"data reference scheme {scheme!r} is not supported")
        if "\\" in reference or "\x00" in reference:
            raise DataReferenceError("data references use '/' separators only")
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

    def _read(self, reference: str) -> list[float]:
        path = self.path_for(reference)
        if not path.is_file():
            raise DataReferenceError(f"data reference {reference!r} not found in DATA_DIR/inputs")
        size = path.stat().st_size
        if size > self.max_bytes:
            raise DataReferenceError(
                f"data reference {reference!r} is {size} bytes; the limit is {self.max_bytes}"
            )
        try:
            content = json.loads(path.read_bytes(), parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataReferenceError(
                f"data reference {reference!r} is not valid JSON: {exc}"
            ) from None
        if isinstance(content, dict) and set(content) == {"values"}:
            content = content["values"]
        try:
            return _VALUES.validate_python(content)
        except ValidationError:
            raise DataReferenceError(
                f"data reference {reference!r} must hold a JSON list of finite numbers "
                'or {"values": [...]}'
            ) from None

    async def resolve(self, reference: str) -> list[float]:
        # File I/O in a thread: a slow disk must not stall the event loop.
        return await asyncio.to_thread(self._read, reference)
