from __future__ import annotations

from pathlib import Path

import pytest

from memeguard.blobs import BlobNotFound, LocalBlobStore, open_blob_store, sha256_hex


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
        open_blob_store("s3://bucket/prefix")
