from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from composition.runtime import Runtime
from memeguard.blobs import (
    BlobNotFound,
    BlobStore,
    BlobUnavailable,
    LocalBlobStore,
    S3BlobStore,
    S3Options,
    open_blob_store,
    sha256_hex,
)
from memeguard.settings import Settings
from tests.helpers.services import free_port
from worker.analyzers.base import is_transient


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    key = store.put(b"meme")
    assert key == sha256_hex(b"meme")
    assert store.put(b"meme") == key
    assert store.get(key) == b"meme" and store.exists(key)
    assert (tmp_path / key[:2] / key[2:4] / key).is_file()
    assert not list(tmp_path.rglob(".tmp-*"))


def test_missing_blob_raises_blob_not_found(tmp_path: Path) -> None:
    with pytest.raises(BlobNotFound):
        LocalBlobStore(tmp_path).get("0" * 64)


def test_keys_must_be_sha256(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sha256"):
        LocalBlobStore(tmp_path).get("../../etc/passwd")


def test_open_blob_store_refuses_unknown_schemes(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(f"file://{tmp_path}"), LocalBlobStore)
    with pytest.raises(ValueError, match="unsupported blob store"):
        open_blob_store("gs://bucket/prefix")
    with pytest.raises(ValueError, match="unsupported blob store"):
        open_blob_store("s3:///no-bucket")


# --- both backends: the S3 one against a real S3-protocol server (moto's) on loopback ---------------------


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_options(endpoint: str, **overrides: Any) -> S3Options:
    return S3Options(
        **{
            "endpoint_url": endpoint,
            "path_style": True,
            "access_key_id": "test-key-id",
            "secret_access_key": "test-secret-key-do-not-log",
            "timeout_s": 2.0,
            **overrides,
        }
    )


@pytest.fixture
def s3_store(s3_server: str) -> S3BlobStore:
    bucket = f"memeguard-{uuid.uuid4().hex[:10]}"
    store = open_blob_store(f"s3://{bucket}/images", s3_options(s3_server))
    assert isinstance(store, S3BlobStore)
    store.client.create_bucket(Bucket=bucket)
    return store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path)
    s3: S3BlobStore = request.getfixturevalue("s3_store")
    return s3


def test_both_backends_keep_the_contract(store: BlobStore) -> None:
    key = store.put("表情包".encode() * 1000)
    assert key == sha256_hex("表情包".encode() * 1000)
    assert store.put("表情包".encode() * 1000) == key  # the same bytes: a no-op
    assert store.get(key) == "表情包".encode() * 1000 and store.exists(key)
    assert not store.exists("0" * 64)
    with pytest.raises(BlobNotFound):
        store.get("0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        store.get("../../etc/passwd")


def test_s3_objects_are_content_addressed_under_the_prefix(s3_store: S3BlobStore) -> None:
    key = s3_store.put(b"meme")
    listed = s3_store.client.list_objects_v2(Bucket=s3_store.bucket)["Contents"]
    assert [o["Key"] for o in listed] == [f"images/{key[:2]}/{key[2:4]}/{key}"]


def test_an_unreachable_store_is_transient_within_a_bounded_time_and_names_no_secret() -> None:
    """Nothing listens on the port: botocore retries with backoff, then the call ends BlobUnavailable (a
    ConnectionError, which the workers retry) — within the attempts' timeouts, the credentials nowhere."""
    store = open_blob_store(
        "s3://bucket/p", s3_options(f"http://127.0.0.1:{free_port()}", max_attempts=2, timeout_s=0.5)
    )
    from prometheus_client import REGISTRY

    labels = {"operation": "get_object", "kind": "unavailable"}
    before = REGISTRY.get_sample_value("memeguard_blob_errors_total", labels) or 0
    started = time.monotonic()
    with pytest.raises(BlobUnavailable) as info:
        store.get("0" * 64)
    assert REGISTRY.get_sample_value("memeguard_blob_errors_total", labels) == before + 1
    assert time.monotonic() - started < 10
    assert isinstance(info.value, ConnectionError) and is_transient(info.value)
    assert "test-secret-key-do-not-log" not in str(info.value) and info.value.__cause__ is None


def test_the_runtime_reads_and_writes_through_s3(s3_server: str, tmp_path: Path, sqlite_url: str) -> None:
    """Settings -> runtime -> the same interface the API, the workers and the console use."""
    bucket = f"rt-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        data_dir=tmp_path,
        database_url=sqlite_url,
        blob_store=f"s3://{bucket}",
        blob_s3_endpoint_url=s3_server,
        blob_s3_path_style=True,
        blob_s3_access_key_id="test-key-id",
        blob_s3_secret_access_key="test-secret-key-do-not-log",
    )
    runtime = Runtime(settings)
    assert isinstance(runtime.blobs, S3BlobStore)
    runtime.blobs.client.create_bucket(Bucket=bucket)
    assert runtime.blobs.get(runtime.blobs.put(b"bytes")) == b"bytes"
    shown = json.dumps(settings.masked())
    assert "test-secret-key-do-not-log" not in shown and "test-key-id" not in shown
