"""Per-tenant rate limits, upload quotas and a cap on queued jobs (429 with ``Retry-After`` and a code).

The rule: one tenant cannot take the fleet from the others — not by request rate (``rate_limit``, every API
request), not by volume (``upload_quota``, uploads accepted), not by queue time (``max_queued``,
jobs waiting for a worker). Counters live in the broker's Redis through the ``limits`` library, so every API
process shares them (sliding-window counters: smooth, two keys per tenant and limit); embedded (no Redis)
they are this process's own. Each limit has a per-tenant override (``tenant_limits``).

A limit store that fails (Redis down) lets the request through and counts it
(``memeguard_limiter_errors_total``): with Redis down the queue already degrades on its own, and a limiter
that refused everything then would turn a broker outage into a full API outage.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException
from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from memeguard.metrics import LIMITED, LIMITER_ERRORS
from memeguard.settings import Settings

log = logging.getLogger(__name__)

QUEUED_CACHE_S = 1.0  # a tenant's queued count is re-read at most once a second per process
STORE_TIMEOUT_S = 0.5  # a Redis that does not answer costs a request at most this, then the check is skipped


class Limited(HTTPException):
    """429 with a stable code (``rate_limited``, ``quota_exceeded``, ``queue_full``) and ``Retry-After``."""

    def __init__(self, code: str, message: str, retry_after_s: int) -> None:
        self.body, self.retry_after_s = {"error": code, "message": message}, retry_after_s
        super().__init__(429, {"error": code, "message": message}, headers={"Retry-After": str(retry_after_s)})


@dataclass(frozen=True)
class TenantLimits:
    rate: RateLimitItem | None
    quota: RateLimitItem | None
    max_queued: int | None


def limits_of(settings: Settings, tenant: str) -> TenantLimits:
    """The tenant's limits: its override where ``tenant_limits`` names one, else the fleet's defaults."""
    own = settings.tenant_limits.get(tenant, {})
    rate = own.get("rate_limit", settings.rate_limit)
    quota = own.get("upload_quota", settings.upload_quota)
    queued = own.get("max_queued", settings.max_queued)
    return TenantLimits(
        parse(str(rate)) if rate else None,
        parse(str(quota)) if quota else None,
        int(queued) if queued is not None else None,
    )


def storage_uri(settings: Settings) -> str:
    if settings.rate_limit_storage:
        return settings.rate_limit_storage
    if settings.sentinels:  # the limits library's own Sentinel scheme: it follows failovers too
        hosts = ",".join(f"{host}:{port}" for host, port in settings.sentinels)
        return f"redis+sentinel://{hosts}/{settings.broker_sentinel_master}"
    return settings.broker_url if settings.broker_url.startswith(("redis://", "rediss://")) else "memory://"


class Quotas:
    """The three checks, one call each from the API's edge. ``count_queued`` reads the database."""

    def __init__(self, settings: Settings, count_queued: Callable[[str], int]) -> None:
        self.settings = settings
        for tenant in ("", *settings.tenant_limits):  # a malformed limit fails at start, not on a request
            limits_of(settings, tenant)
        uri = storage_uri(settings)
        options = (
            {"socket_timeout": STORE_TIMEOUT_S, "socket_connect_timeout": STORE_TIMEOUT_S}
            if uri.startswith("redis")
            else {}
        )
        storage = storage_from_string(uri, key_prefix="memeguard-limits", **options)
        if not isinstance(storage, Storage):
            raise ValueError(f"rate_limit_storage {uri!r} is an async storage; use a synchronous one")
        self.storage = storage
        self.rates = SlidingWindowCounterRateLimiter(self.storage)
        self.quotas = SlidingWindowCounterRateLimiter(self.storage)
        self._count_queued = count_queued
        self._queued: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def request(self, tenant: str) -> None:
        """One API request of ``tenant``: refused ``rate_limited`` past its requests-per-window."""
        rate = limits_of(self.settings, tenant).rate
        if rate is not None and not self._guarded(lambda: self.rates.hit(rate, tenant), True):
            retry = self._reset(self.rates, rate, tenant)
            raise self._refuse(
                tenant, "requests", "rate_limited", f"more than {rate} requests for tenant {tenant!r}", retry
            )

    def uploads(self, tenant: str, count: int) -> None:
        """Before ``count`` uploads: refused ``queue_full`` while the tenant already has ``max_queued`` jobs
        waiting, or ``quota_exceeded`` if they would pass the upload quota. The quota is reserved atomically
        here (a refused reservation takes nothing), so concurrent API processes never overshoot it; every
        upload accepted for processing counts, a resubmitted content id included."""
        own = limits_of(self.settings, tenant)
        if own.max_queued is not None and self.queued(tenant) >= own.max_queued:
            raise self._refuse(
                tenant,
                "queued",
                "queue_full",
                f"tenant {tenant!r} has {own.max_queued} or more jobs waiting; retry when some are done",
                5,
            )
        quota = own.quota
        if quota is not None and not self._guarded(lambda: self.quotas.hit(quota, tenant, cost=count), True):
            raise self._refuse(
                tenant,
                "uploads",
                "quota_exceeded",
                f"upload quota of {quota} reached for tenant {tenant!r}",
                self._reset(self.quotas, quota, tenant),
            )

    def spend(self, tenant: str, created: int) -> None:
        """Jobs just created wait in the queue: count them until the next read of the database."""
        with self._lock:
            seen, count = self._queued.get(tenant, (0.0, 0))
            self._queued[tenant] = (seen, count + created)

    def queued(self, tenant: str) -> int:
        with self._lock:
            seen, count = self._queued.get(tenant, (0.0, 0))
        if time.monotonic() - seen < QUEUED_CACHE_S:
            return count
        count = self._count_queued(tenant)
        with self._lock:
            self._queued[tenant] = (time.monotonic(), count)
        return count

    def _guarded(self, check: Callable[[], bool], fallback: bool) -> bool:
        try:
            return check()
        except Exception as exc:  # the limit store failed: let the request through (module docstring)
            LIMITER_ERRORS.inc()
            log.warning("rate-limit store unavailable (%s): request let through", type(exc).__name__)
            return fallback

    def _reset(self, limiter: SlidingWindowCounterRateLimiter, item: RateLimitItem, tenant: str) -> int:
        try:
            reset_at = limiter.get_window_stats(item, tenant).reset_time
        except Exception:
            return item.get_expiry()
        return max(1, math.ceil(reset_at - time.time()))

    @staticmethod
    def _refuse(tenant: str, limit: str, code: str, message: str, retry_after_s: int) -> Limited:
        LIMITED.labels(tenant, limit).inc()
        return Limited(code, message, retry_after_s)
