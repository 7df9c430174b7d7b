"""Where memeguard may send a request a platform named (callbacks): never into the network it runs in.

A callback URL is the platform's input, and the worker POSTs to it from inside the fleet's network: without a
check, a tenant can make memeguard call the cloud metadata service, an admin port on loopback or a database on
the private network (SSRF). ``refusal`` resolves the URL's host and refuses it unless every address it
resolves to is a public unicast address — checked on the address itself, so the encodings that hide one
(decimal ``2130706433``, hex, octal, IPv4-mapped ``::ffff:127.0.0.1``, 6to4, NAT64) refuse as what they
encode. It runs when the upload is accepted and again right before each delivery (a name may resolve
elsewhere by then: DNS rebinding), and the delivery then connects to the very address that was checked
(``EgressPolicy.vet`` returns it pinned, with the name kept for the Host header and TLS), so no second lookup
can swap it; deliveries follow no redirects.

An on-premise receiver on a private address is allowed explicitly (``MEMEGUARD_CALLBACK_ALLOW``: hosts or
CIDR networks), and plain ``http`` only for the tenants listed in ``MEMEGUARD_CALLBACK_HTTP_TENANTS``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from memeguard.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], list[str]]

# names that reach a cloud provider's instance metadata whatever they resolve to here
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata", "metadata.azure.internal", "instance-data", "instance-data.ec2.internal"}
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def resolve(host: str) -> list[str]:
    """Every address the host resolves to (IPv4 and IPv6)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


@dataclass(frozen=True)
class Target:
    """A vetted callback target pinned to the address that was checked: ``url`` names the address, ``host``
    the original name (sent as the Host header and used as the TLS server name, so certificates still
    verify against the name)."""

    url: str
    host: str
    host_header: str

    def request_options(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client.post`` that connect to the pinned address as ``host``."""
        return {"headers": {"Host": self.host_header}, "extensions": {"sni_hostname": self.host}}


def refusal(
    url: str, tenant: str, *, allow: Sequence[str] = (), http_tenants: Sequence[str] = (), resolver: Resolver = resolve
) -> str | None:
    """Why memeguard must not send to ``url`` for ``tenant``, or None when it may."""
    checked = vet(url, tenant, allow=allow, http_tenants=http_tenants, resolver=resolver)
    return checked if isinstance(checked, str) else None


def vet(
    url: str, tenant: str, *, allow: Sequence[str] = (), http_tenants: Sequence[str] = (), resolver: Resolver = resolve
) -> Target | str:
    """The target pinned to its first checked address, or why memeguard must not send to ``url``."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme not in ("https", "http") or not host:
        return "callback_url must be an http(s) URL with a host"
    if parts.scheme == "http" and tenant not in http_tenants and "*" not in http_tenants:
        return "callback_url must use https (plain http is allowed per tenant: MEMEGUARD_CALLBACK_HTTP_TENANTS)"
    if parts.username or parts.password:
        return "callback_url must not carry credentials"
    if host in METADATA_HOSTS and host not in allow:
        return f"{host} is a cloud metadata service"
    try:
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(host)]
    except (OSError, UnicodeError, ValueError) as exc:
        return f"{host} does not resolve ({type(exc).__name__})"
    if not addresses:
        return f"{host} does not resolve"
    for address in addresses:
        if host not in allow and not _allowed(address, allow) and (why := _internal(address)):
            return f"{host} resolves to {address}, {why}: set MEMEGUARD_CALLBACK_ALLOW for an on-premise receiver"
    return _pinned(parts, host, addresses[0])


def _pinned(parts: Any, host: str, address: Address) -> Target:
    literal = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return Target(urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host, host_header)


def _allowed(address: Address, allow: Sequence[str]) -> bool:
    for entry in allow:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name: matched before resolving
    return False


def _internal(address: Address) -> str | None:
    """Why an address is not a public unicast one (None when it is), looking through IPv6 forms that embed
    an IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = (
            address.ipv4_mapped
            or address.sixtofour
            or (address.teredo[1] if address.teredo else None)
            or (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in NAT64 else None)
        )
        if embedded is not None:
            return _internal(embedded)
    checks = (
        ("loopback", address.is_loopback),
        ("link-local (cloud metadata lives there)", address.is_link_local),
        ("private", address.is_private),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("unspecified", address.is_unspecified),
        ("not globally routable", not address.is_global),
    )
    return next((f"a {name} address" for name, hit in checks if hit), None)


class EgressPolicy:
    """The callback-target rule as configured: ``refusal(url, tenant)``. The default allows no internal
    address and no plain http."""

    def __init__(
        self, allow: Sequence[str] = (), http_tenants: Sequence[str] = (), resolver: Resolver = resolve
    ) -> None:
        self.allow, self.http_tenants, self.resolver = tuple(allow), tuple(http_tenants), resolver

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        return cls(settings.callback_allow, settings.callback_http_tenants)

    def refusal(self, url: str, tenant: str) -> str | None:
        return refusal(url, tenant, allow=self.allow, http_tenants=self.http_tenants, resolver=self.resolver)

    def vet(self, url: str, tenant: str) -> Target | str:
        return vet(url, tenant, allow=self.allow, http_tenants=self.http_tenants, resolver=self.resolver)
