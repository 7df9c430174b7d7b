"""Callback targets: refused when they reach into the fleet's own network, in every encoding."""

from __future__ import annotations

import pytest

from memeguard.egress import refusal, resolve


def fixed(*addresses: str):  # type: ignore[no-untyped-def]
    """A resolver for a name whose DNS answer the test decides (an attacker controls their own DNS)."""
    return lambda _host: list(addresses)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://10.0.0.5/x",
        "https://172.16.3.4/x",
        "https://192.168.1.1/x",
        "https://[fd00::1]/x",
        "https://[fe80::1]/x",
        "https://0.0.0.0/x",
        "https://2130706433/x",  # 127.0.0.1 as one decimal number
        "https://0x7f.0.0.1/x",
        "https://0177.0.0.1/x",  # hex and octal spellings the resolver accepts
        "https://[::ffff:127.0.0.1]/x",
        "https://[::ffff:169.254.169.254]/x",  # IPv4-mapped
        "https://[2002:7f00:1::]/x",  # 6to4 around 127.0.0.1
        "https://[64:ff9b::a9fe:a9fe]/x",  # NAT64 around 169.254.169.254
        "https://100.64.0.1/x",  # carrier-grade NAT: not globally routable
    ],
)
def test_internal_targets_are_refused_in_every_encoding(url: str) -> None:
    assert refusal(url, "acme") is not None, url


def test_a_name_is_refused_for_what_it_resolves_to() -> None:
    assert refusal("https://rebind.example/x", "acme", resolver=fixed("93.184.216.34")) is None
    why = refusal("https://rebind.example/x", "acme", resolver=fixed("93.184.216.34", "10.1.2.3"))
    assert why is not None and "10.1.2.3" in why and "private" in why  # any one internal answer refuses


def test_https_is_required_unless_a_tenant_may_use_http() -> None:
    public = fixed("93.184.216.34")
    assert "https" in (refusal("http://hooks.example/x", "acme", resolver=public) or "")
    assert refusal("http://hooks.example/x", "acme", http_tenants=["acme"], resolver=public) is None
    assert refusal("http://hooks.example/x", "other", http_tenants=["acme"], resolver=public) is not None
    assert refusal("https://user:pw@hooks.example/x", "acme", resolver=public) is not None
    assert refusal("ftp://hooks.example/x", "acme", resolver=public) is not None


def test_an_on_premise_receiver_is_allowed_explicitly() -> None:
    assert refusal("https://10.0.0.5/x", "acme", allow=["10.0.0.0/24"]) is None
    assert refusal("https://10.0.1.5/x", "acme", allow=["10.0.0.0/24"]) is not None
    assert refusal("https://hooks.corp/x", "acme", allow=["hooks.corp"], resolver=fixed("10.9.9.9")) is None
    assert refusal("http://127.0.0.1:8080/x", "acme", allow=["127.0.0.1/32"], http_tenants=["*"]) is None


def test_a_name_that_does_not_resolve_is_refused() -> None:
    assert "does not resolve" in (refusal("https://no-such-host.invalid/x", "acme") or "")
    assert resolve("127.0.0.1") == ["127.0.0.1"]
