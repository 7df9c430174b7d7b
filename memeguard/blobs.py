"""Content-addressed image storage. Task messages carry job ids; bytes live here, keyed by sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit


class BlobNotFound(LookupError):
    """The blob is not in the store: permanent for the job that needs it."""


class BlobStore(Protocol):
    def put(self, data: bytes) -> str: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalBlobStore:
    """Blobs under ``root/ab/cd/<sha256>``; writes are atomic (temp file + rename), so a crash never
    leaves a half-written blob under a valid key, and writing the same bytes twice is a no-op."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a sha256 blob key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        key = sha256_hex(data)
        path = self._path(key)
        if path.exists():
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        return key

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    def exists(self, key: str) -> bool:
        return self._path(key).exists()


def open_blob_store(location: str) -> BlobStore:
    """``file:///path`` or a plain path. Other schemes are refused loudly rather than guessed."""
    parts = urlsplit(location)
    if parts.scheme in ("", "file"):
        return LocalBlobStore(Path(parts.path if parts.scheme else location))
    raise ValueError(f"unsupported blob store {location!r}: only local paths and file:// URLs are implemented")
