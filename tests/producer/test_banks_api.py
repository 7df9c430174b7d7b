"""``/v1/banks`` end to end over HTTP (SQLite deployment, inline queue): curation, CSV, access control, and
a bank change reaching the pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from banks.signals import hash_frame
from composition.runtime import Runtime
from memeguard.imaging import decode_frames
from memeguard.settings import Settings
from producer.api import create_app
from tests.helpers.services import API_KEYS
from worker.samples import render_meme

ADMIN_KEY = "adm-" + "7" * 28
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TENANT = {"Authorization": f"Bearer {API_KEYS['tenant-a']}"}


@pytest.fixture
def client(tmp_path: Path, sqlite_url: str, embedded_analyzer) -> TestClient:  # type: ignore[no-untyped-def]
    runtime = Runtime(
        Settings(
            data_dir=tmp_path, database_url=sqlite_url, api_keys=API_KEYS, admin_api_key=ADMIN_KEY, bank_refresh_s=1
        )
    )
    runtime.analyzer = embedded_analyzer
    return TestClient(create_app(runtime))


def test_curation_round_trip(client: TestClient) -> None:
    assert (
        client.post(
            "/v1/banks", json={"name": "bad", "kind": "harmful", "label": "general_offense"}, headers=ADMIN
        ).status_code
        == 201
    )
    added = client.post("/v1/banks/bad/hashes", json=[{"pdq": "a" * 64, "quality": 90}], headers=ADMIN)
    assert added.status_code == 201 and len(added.json()["ids"]) == 1
    imported = client.post(
        "/v1/banks/bad/hashes:import", content=f"{'b' * 64},80,x\n", headers={**ADMIN, "Content-Type": "text/csv"}
    )
    assert imported.json() == {"imported": 1}
    assert client.patch("/v1/banks/bad", json={"enabled_ratio": 0.1}, headers=ADMIN).json()["enabled_ratio"] == 0.1
    removed = client.post("/v1/banks/bad/hashes:remove", json={"ids": added.json()["ids"]}, headers=ADMIN)
    assert removed.json() == {"removed": 1}
    assert client.get("/v1/banks/bad/hashes.csv", headers=ADMIN).text == f"{'b' * 64},80,x\n"
    assert client.get("/v1/banks", headers=ADMIN).json()[0]["hashes"] == 1


@pytest.mark.parametrize(("headers", "status"), [({}, 401), (TENANT, 401), ({"X-API-Key": "x" * 32}, 401)])
def test_only_the_admin_key_curates(client: TestClient, headers: dict[str, str], status: int) -> None:
    assert client.get("/v1/banks", headers=headers).status_code == status


def test_refusals_carry_the_reason(client: TestClient) -> None:
    assert client.patch("/v1/banks/nope", json={"enabled": False}, headers=ADMIN).status_code == 404
    client.post("/v1/banks", json={"name": "t", "kind": "template"}, headers=ADMIN)
    bad = client.post("/v1/banks/t/hashes", json=[{"pdq": "xyz"}], headers=ADMIN)
    assert bad.status_code == 422 and "64 lower-case hex" in bad.json()["message"]
    # objects the document declares may be left out, never sent as null (found by the contract test)
    for method, path, body in [
        ("POST", "/v1/banks", {"name": "gh", "kind": "harmful", "distances": None}),
        ("PATCH", "/v1/banks/t", {"distances": None}),
        ("POST", "/v1/banks/t/hashes", [{"signals": None, "pdq": "a" * 64}]),
    ]:
        refused = client.request(method, path, json=body, headers=ADMIN)
        assert refused.status_code == 422 and "not null" in refused.json()["fields"][0]["reason"], (path, refused.text)


def test_a_bank_added_over_the_api_decides_the_next_upload(client: TestClient) -> None:
    meme = render_meme("一段看似无害的文字", "panda")
    image = hash_frame(decode_frames(meme, 1)[0])
    client.post("/v1/banks", json={"name": "known", "kind": "harmful", "label": "targeted_harm"}, headers=ADMIN)
    client.post(
        "/v1/banks/known/hashes",
        json=[{"signals": {"pdq": f"{image.pdq:064x}"}, "quality": image.quality}],
        headers=ADMIN,
    )
    created = client.post(
        "/v1/jobs", files={"image": ("m.png", meme, "image/png")}, data={"content_id": "k1"}, headers=TENANT
    )
    body = client.get(f"/v1/jobs/{created.json()['job_id']}", headers=TENANT).json()
    assert body["verdict"]["harm_type"] == "targeted_harm" and body["verdict"]["analyzer"] == "fingerprint"


def test_banks_are_off_without_an_admin_key(tmp_path: Path, sqlite_url: str) -> None:
    runtime = Runtime(Settings(data_dir=tmp_path, database_url=sqlite_url, api_keys=API_KEYS))
    assert TestClient(create_app(runtime)).get("/v1/banks", headers=ADMIN).status_code == 403


def test_placeholder_admin_key_fails_fast() -> None:
    with pytest.raises(ValueError, match="admin API key"):
        Settings(admin_api_key="changeme")


def test_an_empty_admin_key_means_curation_is_off() -> None:
    assert Settings(admin_api_key="").admin_api_key is None


def test_every_hash_type_of_the_registry_over_the_api(client: TestClient) -> None:
    """Distances and values by type name (the deprecated per-type fields still read and write the same),
    and CSV per type at ``/hashes/{type}:import`` and ``/hashes/{type}.csv``."""
    from banks.signals import SIGNAL_TYPES

    frames = " ".join(c * 64 for c in "abc")
    bank = client.post(
        "/v1/banks",
        json={"name": "gifs", "kind": "harmful", "distances": {"vpdq": 20}, "phash_distance": 5},
        headers=ADMIN,
    ).json()
    assert bank["distances"] == {"pdq": 31, "phash": 5, "vpdq": 20} and bank["phash_distance"] == 5
    added = client.post(
        "/v1/banks/gifs/hashes", json=[{"signals": {"vpdq": frames}, "quality": 88, "note": "n"}], headers=ADMIN
    )
    assert added.status_code == 201, added.text
    assert client.get("/v1/banks/gifs/hashes/vpdq.csv", headers=ADMIN).text == f"{frames},88,n\n"
    assert client.get("/v1/banks/gifs/hashes/pdq.csv", headers=ADMIN).text == ""
    csv_headers = {**ADMIN, "Content-Type": "text/csv"}
    imported = client.post("/v1/banks/gifs/hashes/phash:import", content=f"hash\n{'d' * 16},,\n", headers=csv_headers)
    assert imported.json() == {"imported": 1}
    patched = client.patch("/v1/banks/gifs", json={"distances": {"pdq": 10}}, headers=ADMIN).json()
    assert patched["distances"] == {"pdq": 10, "phash": 5, "vpdq": 20}
    for body, reason in (
        ([{"signals": {"md5": "0" * 32}}], "unknown hash type"),
        ([{"signals": {"vpdq": "a" * 64}}], "vPDQ value"),
        ([{"signals": {}}], "at least one"),
    ):
        refused = client.post("/v1/banks/gifs/hashes", json=body, headers=ADMIN)
        assert refused.status_code == 422 and reason in refused.text
    paths = client.get("/openapi.json").json()["paths"]
    assert all(f"/v1/banks/{{name}}/hashes/{name}.csv" in paths for name in SIGNAL_TYPES)
