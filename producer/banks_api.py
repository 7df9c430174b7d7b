"""``/v1/banks``: bank curation over HTTP for trust-and-safety tooling (the admin key, never a tenant key).

Banks are shared by every tenant, so a platform's ingestion key cannot change them. Each call is one
transaction with its audit entry; a refused change answers 422 ``bank_refused`` (404 ``not_found`` for an
unknown bank, 409 ``conflict`` for a name taken) with the reason.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StrictBool, StrictStr
from sqlalchemy.orm import Session

from banks import store as banks
from banks.store import BANK_NAME, BankError, BankRecord, NewHash
from memeguard.db import BankKind
from producer.contract import ERRORS, errors
from producer.deps import ApiServices

router = APIRouter(
    prefix="/v1/banks",
    tags=["banks"],
    responses=errors(
        "unauthorized",
        "banks_disabled",
        "not_found",
        "not_finished",
        "conflict",
        "bank_refused",
        "invalid_request",
        "too_large",
        "bad_request",
        "database_unavailable",
    ),
)
# one ThreatExchange PDQ CSV line (``pdq_hex[,quality[,note]]``), a comment or a header, as import_csv reads it
CSV_TEXT = r'[^\r\n"]*'
CSV_LINE = rf"([ \t\f\v]*|#{CSV_TEXT}|(hash|pdq)(,{CSV_TEXT})?|[0-9a-f]{{64}}(,(100|[0-9]{{1,2}})?(,{CSV_TEXT})?)?)"
CSV_SCHEMA = {"type": "string", "minLength": 1, "pattern": rf"^{CSV_LINE}((\r\n|\r|\n){CSV_LINE})*$"}
T = TypeVar("T")


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("a number, not true/false")
    return value


# a JSON integer (42 or 42.0, as JSON Schema counts them), never a boolean
Whole = Annotated[int, BeforeValidator(_not_bool)]


class BankIn(BaseModel):
    # the banks' own rules, declared (the banks refuse with ``bank_refused``; an existing name too)
    name: str = Field(json_schema_extra={"pattern": BANK_NAME.pattern})
    kind: BankKind
    label: str = ""
    pdq_distance: Whole = Field(default=31, json_schema_extra={"minimum": 0, "maximum": 64})
    phash_distance: Whole = Field(default=8, json_schema_extra={"minimum": 0, "maximum": 16})


class BankPatch(BaseModel):
    # strict scalars: JSON false is not the number 0
    enabled: StrictBool | None = None
    enabled_ratio: Annotated[float, Strict()] | None = Field(default=None, ge=0.0, le=1.0)
    label: StrictStr | None = None
    pdq_distance: Whole | None = Field(default=None, json_schema_extra={"minimum": 0, "maximum": 64})
    phash_distance: Whole | None = Field(default=None, json_schema_extra={"minimum": 0, "maximum": 16})


class HashIn(BaseModel):
    """A PDQ hash (64 lower-case hex digits), a pHash (16), or both."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["pdq"], "properties": {"pdq": {"type": "string"}}},
                {"required": ["phash"], "properties": {"phash": {"type": "string"}}},
            ]
        }
    )
    pdq: str | None = Field(default=None, json_schema_extra={"pattern": "^[0-9a-f]{64}$"})
    quality: Whole | None = Field(default=None, json_schema_extra={"minimum": 0, "maximum": 100})
    phash: str | None = Field(default=None, json_schema_extra={"pattern": "^[0-9a-f]{16}$"})
    note: str = ""


MAX_ID = 2**53 - 1  # the largest integer every JSON parser carries exactly (ids are far below it)


class HashIds(BaseModel):
    ids: list[Annotated[Whole, Field(ge=0, le=MAX_ID, json_schema_extra={"minimum": 0, "maximum": MAX_ID})]]


def admin_of(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    """The admin key (MEMEGUARD_ADMIN_API_KEY) or 401; with none configured, bank curation is off (403)."""
    services: ApiServices = request.app.state.services
    configured = services.settings.admin_api_key
    if configured is None:
        raise HTTPException(403, {"error": "banks_disabled", "message": "no MEMEGUARD_ADMIN_API_KEY configured"})
    presented = (x_api_key or (authorization or "").removeprefix("Bearer ")).strip().encode()
    if not hmac.compare_digest(presented, configured.get_secret_value().encode()):
        raise HTTPException(
            401,
            {"error": "unauthorized", "message": "bank curation needs the admin API key"},
            headers={"WWW-Authenticate": "Bearer"},
        )
    return "api:admin"


Admin = Annotated[str, Depends(admin_of)]


def _change(request: Request, change: Callable[[Session], T]) -> T:
    services: ApiServices = request.app.state.services
    with services.sessions() as session:
        try:
            result = change(session)
        except BankError as exc:
            raise HTTPException(ERRORS[exc.code][0], {"error": exc.code, "message": str(exc)}) from exc
        session.commit()
    return result


def _bank_json(bank: BankRecord, count: int | None = None) -> dict[str, Any]:
    data = {
        "name": bank.name,
        "kind": bank.kind.value,
        "label": bank.label,
        "enabled": bank.enabled,
        "enabled_ratio": bank.enabled_ratio,
        "pdq_distance": bank.pdq_distance,
        "phash_distance": bank.phash_distance,
    }
    return data if count is None else {**data, "hashes": count}


@router.get("", summary="Banks with their live hash counts")
def list_banks(request: Request, _: Admin) -> list[dict[str, Any]]:
    return [_bank_json(b, n) for b, n in _change(request, banks.list_banks)]


@router.post("", status_code=201, summary="Create a bank (template, harmful or allow-list)")
def create_bank(request: Request, actor: Admin, body: BankIn) -> dict[str, Any]:
    bank = _change(
        request,
        lambda s: banks.create_bank(
            s,
            body.name,
            body.kind,
            body.label,
            actor=actor,
            pdq_distance=body.pdq_distance,
            phash_distance=body.phash_distance,
        ),
    )
    return _bank_json(bank)


@router.patch("/{name}", summary="Enable/disable, roll out gradually, change distances")
def configure_bank(request: Request, actor: Admin, name: str, body: BankPatch) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    return _bank_json(_change(request, lambda s: banks.configure_bank(s, name, actor=actor, **changes)))


@router.post("/{name}/hashes", status_code=201, summary="Add hashes (PDQ and/or pHash, lower-case hex)")
def add_hashes(request: Request, actor: Admin, name: str, body: list[HashIn]) -> dict[str, Any]:
    new = [NewHash(h.pdq, h.quality, h.phash, h.note) for h in body]
    return {"ids": _change(request, lambda s: banks.add_hashes(s, name, new, actor=actor, source="api"))}


@router.post("/{name}/hashes:remove", summary="Remove hashes by id")
def remove_hashes(request: Request, actor: Admin, name: str, body: HashIds) -> dict[str, Any]:
    return {"removed": _change(request, lambda s: banks.remove_hashes(s, name, body.ids, actor=actor))}


@router.post("/{name}/hashes:import", status_code=201, summary="Import ThreatExchange PDQ CSV (text/csv)")
def import_csv(
    request: Request,
    actor: Admin,
    name: str,
    body: Annotated[str, Body(media_type="text/csv", json_schema_extra=CSV_SCHEMA)],
) -> dict[str, Any]:
    ids = _change(request, lambda s: banks.import_csv(s, name, body, actor=actor, source="api:csv"))
    return {"imported": len(ids)}


@router.get("/{name}/hashes.csv", response_class=PlainTextResponse, summary="Export the live PDQ hashes")
def export_csv(request: Request, _: Admin, name: str) -> str:
    return _change(request, lambda s: banks.export_csv(s, name))


@router.post("/{name}/jobs/{job_id}", status_code=201, summary="Add a moderated job's image to the bank")
def add_job(request: Request, actor: Admin, name: str, job_id: uuid.UUID) -> dict[str, Any]:
    return {"ids": _change(request, lambda s: banks.add_job(s, name, job_id, actor=actor))}
