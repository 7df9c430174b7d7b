"""Console sessions and CSRF tokens, signed with MEMEGUARD_CONSOLE_SECRET (HMAC-SHA256).

A session cookie carries the user id, an expiry and the session's CSRF token; every state-changing form
posts that token back and it is compared in constant time. Before login, the login form uses the same
scheme with a short-lived anonymous token (double-submit: cookie + form field).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

SESSION_COOKIE = "mg_session"
LOGIN_COOKIE = "mg_login"
SESSION_TTL_S = 8 * 3600
LOGIN_TTL_S = 600


@dataclass(frozen=True)
class SessionData:
    user_id: int
    csrf: str
    expires: int
    issued_ms: int  # when the session began (logout revokes every session issued before it)


def _mac(secret: bytes, payload: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(secret, payload, hashlib.sha256).digest()).decode().rstrip("=")


def sign(secret: bytes, data: dict[str, object]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{payload}.{_mac(secret, payload.encode())}"


def unsign(secret: bytes, token: str | None, now: float | None = None) -> dict[str, object] | None:
    """The data if the signature is ours and the token has not expired, else None."""
    if not token or token.count(".") != 1:
        return None
    payload, mac = token.split(".")
    if not hmac.compare_digest(mac, _mac(secret, payload.encode())):
        return None
    data: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    expires = data.get("exp")
    if not isinstance(expires, int) or expires < (now or time.time()):
        return None
    return data


def new_session(secret: bytes, user_id: int) -> tuple[str, SessionData]:
    now = time.time()
    data = SessionData(user_id, secrets.token_urlsafe(24), int(now) + SESSION_TTL_S, int(now * 1000))
    payload = {"uid": data.user_id, "csrf": data.csrf, "exp": data.expires, "iat": data.issued_ms}
    return sign(secret, payload), data


def read_session(secret: bytes, token: str | None) -> SessionData | None:
    data = unsign(secret, token)
    if data is None:
        return None
    uid, csrf, exp, iat = data.get("uid"), data.get("csrf"), data.get("exp"), data.get("iat")
    if not (isinstance(uid, int) and isinstance(csrf, str) and isinstance(exp, int) and isinstance(iat, int)):
        return None
    return SessionData(uid, csrf, exp, iat)


def new_login_token(secret: bytes) -> tuple[str, str]:
    """(cookie value, form token) for the login form."""
    csrf = secrets.token_urlsafe(24)
    return sign(secret, {"csrf": csrf, "exp": int(time.time()) + LOGIN_TTL_S}), csrf


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
