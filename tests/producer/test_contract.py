"""The OpenAPI document is the contract: what it declares is what the API answers.

A bounded schemathesis run (every check, status-code conformance included) drives every operation of the
embedded API with generated requests; the rest checks what the document promises a platform engineer:
error examples, the NDJSON stream, the webhooks, the error table and /docs without a CDN.
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection
from schemathesis.transport.serialization import Binary

from composition.runtime import Runtime
from composition.webapp import build_app as create_app
from memeguard.migrate import upgrade
from memeguard.settings import Settings
from producer.contract import ERRORS, STREAM_LINE_CODES
from tests.helpers.images import solid
from tests.helpers.services import API_KEYS
from worker.analyzers.noop import NoopAnalyzer

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "admin-" + "k" * 30
AUTH = {"Authorization": f"Bearer {API_KEYS['tenant-a']}"}
PNG = solid("PNG")
MAX_EXAMPLES = 25  # per operation: the whole run stays well under a minute


def build_app(tmp: Path) -> Any:
    url = f"sqlite:///{tmp / 'contract.db'}"
    upgrade(url)
    runtime = Runtime(
        Settings(
            data_dir=tmp,
            database_url=url,
            api_keys=API_KEYS,
            admin_api_key=ADMIN_KEY,
            rate_limit=None,
            max_upload_bytes=300_000,
        )
    )
    runtime.analyzer = NoopAnalyzer()  # the contract is the edge's; the pipeline behind it is tested elsewhere
    return create_app(runtime)


APP = build_app(Path(tempfile.mkdtemp(prefix="memeguard-contract-")))  # module level: schemathesis collects from it


@pytest.fixture(scope="module")
def app() -> Any:
    return APP


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_: Any, value: Any) -> bytes:
    """The stream's body is text; a generated non-text value (a negative case) arrives as no body at all."""
    return value.encode() if isinstance(value, str) else b""


def realistic(body: Any) -> Any:
    """Generated uploads carry a real image (the schema cannot say "a decodable PNG"), and no callback URL
    (one must resolve to a public address, and this machine has no DNS). A copy: generated bodies are shared
    between cases."""
    if not isinstance(body, dict) or not ({"image", "items"} & set(body)):
        return body
    body = copy.deepcopy(body)
    if "image" in body:
        body["image"] = Binary(PNG)  # schemathesis's own wrapper: the case stays a valid, positive one
        body.pop("callback_url", None)
        if not _json_object(body.get("context", "{}")):  # "a JSON object in a string": beyond JSON Schema
            body["context"] = '{"scene": "评论"}'
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        for item in body["items"]:
            if isinstance(item, dict):
                item.pop("callback_url", None)
    return body


def _json_object(text: Any) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (TypeError, ValueError):
        return False


schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_what_the_document_declares(case: Any) -> None:
    ours = {"Authorization": f"Bearer {ADMIN_KEY}"} if case.path.startswith("/v1/banks") else AUTH
    negative = _negative_parts(case)
    excluded = _unchecked(negative)
    edited = case.body if any(part.endswith("body") for part in negative) else realistic(case.body)
    if edited is not case.body:  # a negative body stays as generated
        case.body = edited
        if not negative:  # schemathesis counts any edited body holding a file as schema-violating; this case
            excluded.append(negative_data_rejection)  # was positive and its edited body is still valid
    # a valid key, unless the case brings its own key or its headers are the broken part: then they are sent
    # as generated (a made-up key must get 401)
    own_key = {"authorization", "x-api-key"} & {name.lower() for name in (case.headers or {})}
    headers = {} if own_key or any(part.endswith("header") for part in negative) else ours
    case.call_and_validate(headers=headers, excluded_checks=excluded)


def _negative_parts(case: Any) -> set[str]:
    """Where the case breaks the schema; a negative case that does not say where is taken as its body."""
    if case.meta is None:
        return set()
    parts = {
        str(location).lower()
        for location, info in case.meta.components.items()
        if info.mode == schemathesis.GenerationMode.NEGATIVE
    }
    if not parts and case.meta.generation.mode == schemathesis.GenerationMode.NEGATIVE:
        parts = {"body"}
    return parts


def _unchecked(negative: set[str]) -> list[Any]:
    """A case whose only schema violation is in its headers (an unknown extra header) is not expected to be
    refused: HTTP servers ignore headers they do not know, and so does this API. Every other check runs."""
    only_headers = bool(negative) and all(part.endswith("header") for part in negative)
    return [negative_data_rejection] if only_headers else []


def test_every_declared_error_has_an_example_and_a_code_from_the_table(app: Any) -> None:
    document = app.openapi()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if not status.startswith(("4", "5")):
                    continue
                examples = response["content"]["application/json"]["examples"]
                assert examples, (method, path, status)
                for code, example in examples.items():
                    assert ERRORS[code][0] == int(status) and example["value"]["error"] == code
            if path.startswith("/v1/jobs"):
                assert {"401", "422", "429", "503"} <= set(operation["responses"]), (method, path)


def test_the_stream_and_the_webhooks_are_documented(app: Any) -> None:
    document = app.openapi()
    stream = document["paths"]["/v1/jobs:stream"]["post"]
    assert "application/x-ndjson" in stream["requestBody"]["content"]
    assert "application/x-ndjson" in stream["responses"]["200"]["content"]
    assert set(document["webhooks"]) == {"action", "appeal"}
    action = document["webhooks"]["action"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert action["$ref"].endswith("/ActionCallback")
    assert {"HTTPBearer", "APIKeyHeader"} <= set(document["components"]["securitySchemes"])
    job = document["components"]["schemas"]["JobOut"]["properties"]
    assert {"verdict", "action", "timings", "status"} <= set(job)
    assert "harm_type_zh" in document["components"]["schemas"]["VerdictOut"]["properties"]


def test_the_readme_table_lists_exactly_the_codes(app: Any) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("Every error answers one shape", 1)[1].split("\n\n", 2)[1]
    in_readme = set(re.findall(r"`([a-z_]+)`", table))
    assert in_readme == set(ERRORS), in_readme ^ set(ERRORS)
    for code in STREAM_LINE_CODES:
        assert f"`{code}`" in readme


def test_docs_load_their_assets_from_the_package_not_a_cdn(app: Any) -> None:
    client = TestClient(app)
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
        assert assets and all(a.startswith("/") for a in assets), assets
        for asset in assets:
            answer = client.get(asset)
            assert answer.status_code == 200 and len(answer.content) > 10_000, asset
    assert "cdn." not in client.get("/docs").text


def test_an_unforeseen_failure_answers_the_error_shape_not_a_bare_500(tmp_path: Path) -> None:
    app = build_app(tmp_path)

    def broken(_: Any) -> None:
        raise RuntimeError("a bug")

    app.state.services.view = broken
    answer = TestClient(app, raise_server_exceptions=False).get(
        "/v1/jobs/00000000-0000-0000-0000-000000000000", headers=AUTH
    )
    assert answer.status_code == 500 and answer.json()["error"] == "internal_error"
