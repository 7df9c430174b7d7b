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
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StrictBool, StrictStr, model_validator
from sqlalchemy.orm import Session

from banks import store as banks
from banks.signals import SIGNAL_TYPES, SignalType
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
CSV_TEXT = r'[^\r\n"]*'
T = TypeVar("T")
LEGACY = ("pdq", "phash")  # the hash types that had fields of their own before ``signals`` (kept, deprecated)


def csv_schema(signal: SignalType) -> dict[str, Any]:
    """A CSV file of one hash type as import_csv reads it: ``value[,quality[,note]]`` lines, comments, a
    header (``hash`` or the type's name) and blank lines."""
    value = rf"{signal.pattern}(,(100|[0-9]{{1,2}})?(,{CSV_TEXT})?)?"
    line = rf"([ \t\f\v]*|#{CSV_TEXT}|(hash|{signal.name})(,{CSV_TEXT})?|{value})"
    return {"type": "string", "minLength": 1, "pattern": rf"^{line}((\r\n|\r|\n){line})*$"}


DISTANCES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {t.name: {"type": "integer", "minimum": 0, "maximum": t.max_distance} for t in SIGNAL_TYPES.values()},
    "additionalProperties": False,
}
SIGNALS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {t.name: {"type": "string", "pattern": f"^{t.pattern}$"} for t in SIGNAL_TYPES.values()},
    "additionalProperties": False,
    "minProperties": 1,
}


def _not_null(value: object) -> object:
    """An object field may be left out, never sent as null: the document declares it an object."""
    if value is None:
        raise ValueError("an object, not null (leave the field out instead)")
    return value


Given = BeforeValidator(_not_null)


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("a number, not true/false")
    return value


# a JSON integer (42 or 42.0, as JSON Schema counts them), never a boolean
Whole = Annotated[int, BeforeValidator(_not_bool)]


def _distance(name: str) -> dict[str, Any]:
    return {"minimum": 0, "maximum": SIGNAL_TYPES[name].max_distance}


def _pattern(name: str) -> dict[str, Any]:
    return {"pattern": f"^{SIGNAL_TYPES[name].pattern}$"}


def _legacy(model: BaseModel, suffix: str) -> dict[str, Any]:
    """The deprecated per-type fields (``pdq``/``pdq_distance`` …) that were given, by type name."""
    given = model.__dict__  # not getattr: reading a deprecated field warns, and these are read on purpose
    return {name: value for name in LEGACY if (value := given.get(name + suffix)) is not None}


class BankIn(BaseModel):
    # the banks' own rules, declared (the banks refuse with ``bank_refused``; an existing name too)
    name: str = Field(json_schema_extra={"pattern": BANK_NAME.pattern})
    kind: BankKind
    label: str = ""
    distances: Annotated[dict[str, Whole] | None, Given] = Field(
        default=None,
        description="match distance per hash type; the type's default where not given",
        json_schema_extra=DISTANCES_SCHEMA,
    )
    pdq_distance: Whole | None = Field(default=None, deprecated=True, json_schema_extra=_distance("pdq"))
    phash_distance: Whole | None = Field(default=None, deprecated=True, json_schema_extra=_distance("phash"))

    def chosen(self) -> dict[str, int]:
        """The distances asked for: ``distances`` over the deprecated per-type fields."""
        return {**_legacy(self, "_distance"), **(self.distances or {})}


class BankPatch(BaseModel):
    # strict scalars: JSON false is not the number 0
    enabled: StrictBool | None = None
    enabled_ratio: Annotated[float, Strict()] | None = Field(default=None, ge=0.0, le=1.0)
    label: StrictStr | None = None
    distances: Annotated[dict[str, Whole] | None, Given] = Field(
        default=None, description="the hash types whose distance changes", json_schema_extra=DISTANCES_SCHEMA
    )
    pdq_distance: Whole | None = Field(default=None, deprecated=True, json_schema_extra=_distance("pdq"))
    phash_distance: Whole | None = Field(default=None, deprecated=True, json_schema_extra=_distance("phash"))

    def changes(self) -> dict[str, Any]:
        given = self.model_dump(include={"enabled", "enabled_ratio", "label"}, exclude_none=True)
        distances = {**_legacy(self, "_distance"), **(self.distances or {})}
        return {**given, "distances": distances} if distances else given


class HashIn(BaseModel):
    """One image's hashes: ``signals`` maps hash types to values (lower-case hex; vPDQ: frame PDQs separated
    by spaces). The deprecated ``pdq`` and ``phash`` fields still work, under ``signals``."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": ["string", "object"]}}}
                for name in ("signals", *LEGACY)
            ]
        }
    )
    signals: Annotated[dict[str, str] | None, Given] = Field(default=None, json_schema_extra=SIGNALS_SCHEMA)
    pdq: str | None = Field(default=None, deprecated=True, json_schema_extra=_pattern("pdq"))
    quality: Whole | None = Field(default=None, json_schema_extra={"minimum": 0, "maximum": 100})
    phash: str | None = Field(default=None, deprecated=True, json_schema_extra=_pattern("phash"))
    note: str = ""

    def new_hash(self) -> NewHash:
        return NewHash({**_legacy(self, ""), **(self.signals or {})}, self.quality, self.note)

    @model_validator(mode="after")
    def _some_value(self) -> HashIn:
        if self.signals is not None and not self.signals:
            raise ValueError("signals: give at least one hash type's value")
        return self


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
        "distances": bank.distances,
        **{f"{name}_distance": bank.distance(name) for name in LEGACY},  # deprecated: read ``distances``
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
            distances=body.chosen(),
        ),
    )
    return _bank_json(bank)


@router.patch("/{name}", summary="Enable/disable, roll out gradually, change distances")
def configure_bank(request: Request, actor: Admin, name: str, body: BankPatch) -> dict[str, Any]:
    changes = body.changes()
    return _bank_json(_change(request, lambda s: banks.configure_bank(s, name, actor=actor, **changes)))


@router.post("/{name}/hashes", status_code=201, summary="Add hashes (a value per hash type, lower-case hex)")
def add_hashes(request: Request, actor: Admin, name: str, body: list[HashIn]) -> dict[str, Any]:
    new = [h.new_hash() for h in body]
    return {"ids": _change(request, lambda s: banks.add_hashes(s, name, new, actor=actor, source="api"))}


@router.post("/{name}/hashes:remove", summary="Remove hashes by id")
def remove_hashes(request: Request, actor: Admin, name: str, body: HashIds) -> dict[str, Any]:
    return {"removed": _change(request, lambda s: banks.remove_hashes(s, name, body.ids, actor=actor))}


def _csv_routes(signal: SignalType, importing: str, exporting: str, operation: str) -> None:
    """Import and export CSV of one hash type at the given paths (the registry's loop below)."""
    body_schema = csv_schema(signal)

    def import_csv(
        request: Request,
        actor: Admin,
        name: str,
        body: Annotated[str, Body(media_type="text/csv", json_schema_extra=body_schema)],
    ) -> dict[str, Any]:
        changed = _change(
            request, lambda s: banks.import_csv(s, name, body, actor=actor, source="api:csv", signal=signal.name)
        )
        return {"imported": len(changed)}

    def export_csv(request: Request, _: Admin, name: str) -> str:
        return _change(request, lambda s: banks.export_csv(s, name, signal.name))

    # postponed annotations are resolved in the module's globals, where this type's schema is not
    import_csv.__annotations__["body"] = Annotated[str, Body(media_type="text/csv", json_schema_extra=body_schema)]

    router.post(
        importing,
        status_code=201,
        summary=f"Import {signal.title} CSV (text/csv, ``value,quality[,note]`` lines)",
        operation_id=f"import_{operation}_csv",
    )(import_csv)
    router.get(
        exporting,
        response_class=PlainTextResponse,
        summary=f"Export the live {signal.title} hashes as CSV",
        operation_id=f"export_{operation}_csv",
    )(export_csv)


for _signal in SIGNAL_TYPES.values():
    _csv_routes(
        _signal, f"/{{name}}/hashes/{_signal.name}:import", f"/{{name}}/hashes/{_signal.name}.csv", _signal.name
    )
# ThreatExchange's PDQ CSV at the paths it always had
_csv_routes(SIGNAL_TYPES["pdq"], "/{name}/hashes:import", "/{name}/hashes.csv", "threatexchange_pdq")


@router.post("/{name}/jobs/{job_id}", status_code=201, summary="Add a moderated job's image to the bank")
def add_job(request: Request, actor: Admin, name: str, job_id: uuid.UUID) -> dict[str, Any]:
    return {"ids": _change(request, lambda s: banks.add_job(s, name, job_id, actor=actor))}
