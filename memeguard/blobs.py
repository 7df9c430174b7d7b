"""Content-addressed image storage. Task messages carry job ids; bytes live here, keyed by sha256.

Two backends behind one contract: a local directory (one host) and any S3-compatible object store (a fleet
across hosts: AWS S3, MinIO, Ceph RGW, the S3 APIs of Chinese clouds). The contract: keys are the bytes'
sha256, a second put of the same bytes is a no-op, ``BlobNotFound`` is permanent, ``BlobUnavailable`` is
transient (the store did not answer within its bounded retries; workers retry the job with backoff).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit


class BlobNotFound(LookupError):
    """The blob is not in the store: permanent for the job that needs it."""


class BlobUnavailable(ConnectionError):
    """The store did not answer (after its own bounded retries): transient, retry later. A ConnectionError,
    so every caller that retries network failures retries this too."""


class BlobStore(Protocol):
    def put(self, data: bytes) -> str: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...


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

    def delete(self, key: str) -> None:
        """Remove the blob (retention); ``BlobNotFound`` if it is not there."""
        try:
            self._path(key).unlink()
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc


def _checked_key(key: str) -> str:
    if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
        raise ValueError(f"not a sha256 blob key: {key!r}")
    return key


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible store. Credentials left None come from boto3's own chain (the
    ``AWS_*`` environment, ``~/.aws`` files, an instance or pod role); they never appear in an error."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    path_style: bool = False
    access_key_id: str | None = None
    secret_access_key: str | None = None
    timeout_s: float = 10.0
    max_attempts: int = 4


class S3BlobStore:
    """Blobs as objects ``<prefix>/ab/cd/<sha256>`` in a bucket, through boto3. Every call has a connect and
    a read timeout, and botocore's standard retry mode retries throttling, 5xx answers and connection errors
    with exponential backoff and jitter up to ``max_attempts`` — so a call ends within a bounded time; what
    still fails is ``BlobUnavailable``."""

    def __init__(self, bucket: str, prefix: str, options: S3Options) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - the s3 extra is part of every install target
            raise RuntimeError("an s3:// blob store needs boto3: pip install 'memeguard[s3]'") from exc
        config = Config(
            connect_timeout=options.timeout_s,
            read_timeout=options.timeout_s,
            retries={"max_attempts": options.max_attempts, "mode": "standard"},
            s3={"addressing_style": "path" if options.path_style else "auto"},
        )
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=options.endpoint_url,
            region_name=options.region,
            aws_access_key_id=options.access_key_id,
            aws_secret_access_key=options.secret_access_key,
            config=config,
        )
        self.bucket, self.prefix = bucket, prefix.strip("/")

    def _object(self, key: str) -> str:
        key = _checked_key(key)
        path = f"{key[:2]}/{key[2:4]}/{key}"
        return f"{self.prefix}/{path}" if self.prefix else path

    def put(self, data: bytes) -> str:
        key = sha256_hex(data)
        if not self.exists(key):  # content-addressed: the same bytes are already there
            self._call(
                "put_object",
                Bucket=self.bucket,
                Key=self._object(key),
                Body=data,
                ContentType="application/octet-stream",
            )
        return key

    def get(self, key: str) -> bytes:
        response = self._call("get_object", Bucket=self.bucket, Key=self._object(key), missing=key)
        body: bytes = response["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", Bucket=self.bucket, Key=self._object(key), missing=key)
        except BlobNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove the object (retention); ``BlobNotFound`` if it is not there (S3 deletes are idempotent, so
        a HEAD first tells)."""
        if not self.exists(key):
            raise BlobNotFound(key)
        self._call("delete_object", Bucket=self.bucket, Key=self._object(key))

    def _call(self, operation: str, missing: str | None = None, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        # imported here, not at the top: the settings import this module, and a worker must set
        # PROMETHEUS_MULTIPROC_DIR before the metrics module is first imported
        from memeguard.metrics import BLOB_ERRORS

        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if missing is not None and code in ("404", "NoSuchKey", "NotFound"):
                raise BlobNotFound(missing) from None
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if status >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout"):
                BLOB_ERRORS.labels(operation, "unavailable").inc()
                raise BlobUnavailable(f"object store {operation}: {code or status}") from None
            BLOB_ERRORS.labels(operation, "refused").inc()
            raise RuntimeError(f"object store refused {operation}: {code or status}") from None
        except BotoCoreError as exc:  # connection refused, timeouts, endpoint unreachable
            BLOB_ERRORS.labels(operation, "unavailable").inc()
            raise BlobUnavailable(f"object store {operation}: {type(exc).__name__}") from None


def open_blob_store(location: str, s3: S3Options | None = None) -> BlobStore:
    """``file:///path`` or a plain path, or ``s3://bucket/prefix`` (reached as ``s3`` says). Other schemes
    are refused loudly rather than guessed."""
    parts = urlsplit(location)
    if parts.scheme in ("", "file"):
        return LocalBlobStore(Path(parts.path if parts.scheme else location))
    if parts.scheme == "s3" and parts.netloc:
        return S3BlobStore(parts.netloc, parts.path, s3 or S3Options())
    raise ValueError(f"unsupported blob store {location!r}: use a local path, file:///path or s3://bucket/prefix")
