"""The location guard: which external URLs the catalog may fetch (SSRF defence).

:func:`check_url` parses a URL, resolves its host once and vets every address. It
returns the vetted addresses, and the fetcher connects to one of *those*, never
resolving the name again: a DNS answer that changes between check and connect
(rebinding) cannot steer the request into the private network. The original host name
still goes into the Host header, SNI and the certificate check.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

from .errors import NetworkError, RefusedLocation
from .settings import ALLOW_HOSTS_ENV, HttpSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

DEFAULT_PORTS = {"http": 80, "https": 443}
_HOSTNAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
_METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
}
_SAFE = "/%!$&'()*+,;=:@-._~"
_ULA = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Whitespace (str.isspace's set: Unicode-aware \s) and control characters.
_BAD_CHARACTER = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ParsedTarget:
    """A vetted URL: where to connect (``addresses``) and what to call it (``host``)."""

    url: str  # the URL without its fragment
    scheme: str
    host: str  # as named in the URL: lower-case, IDNA-encoded, IPv6 without brackets
    port: int
    addresses: tuple[str, ...]  # vetted IPs in resolver order; connect only to these
    request_target: str  # path and query for the request line

    @property
    def ip(self) -> str:
        return self.addresses[0]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS.get(self.scheme):
            return host
        return f"{host}:{self.port}"

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def check_url(
    url: str,
    settings: HttpSettings | None = None,
    *,
    resolve: Resolver | None = None,
    vetted: dict[tuple[str, str], tuple[str, int, tuple[str, ...]]] | None = None,
) -> ParsedTarget:
    """Vet ``url`` for fetching, or raise :class:`RefusedLocation` naming the reason.

    Raises :class:`NetworkError` when the host cannot be resolved. ``resolve`` replaces
    ``socket.getaddrinfo`` (tests); it maps (host, port) to IP address strings.
    ``vetted`` memoizes the host part per (scheme, netloc) across the URLs of one batch:
    one lookup and one vetting per origin (refusals are not memoized).
    """
    settings = settings or HttpSettings()
    if not isinstance(url, str):
        raise RefusedLocation(f"a location must be a string, not {type(url).__name__}")
    if _BAD_CHARACTER.search(url):
        raise RefusedLocation(f"URL contains whitespace or control characters: {url!r}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" in the netloc
        raise RefusedLocation(f"malformed URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in settings.allowed_schemes:
        allowed = ", ".join(settings.allowed_schemes) or "none"
        raise RefusedLocation(
            f"scheme {scheme or '(none)'!r} is not allowed in {url!r} (allowed: {allowed})"
        )
    if "@" in parts.netloc:
        raise RefusedLocation(f"credentials (userinfo) in a URL are not allowed: {url!r}")
    key = (scheme, parts.netloc)
    known = vetted.get(key) if vetted is not None else None
    if known is not None:
        host, port, addresses = known
    else:
        host, port, addresses = _vet_host(parts, url, scheme, settings, resolve)
        if vetted is not None:
            vetted[key] = (host, port, addresses)

    # The request line must be ASCII: percent-encode what is not (already-encoded
    # sequences and reserved characters pass through unchanged).
    path = quote(parts.path or "/", safe=_SAFE)
    target = f"{path}?{quote(parts.query, safe=_SAFE + '?')}" if parts.query else path
    clean = urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))
    return ParsedTarget(clean, scheme, host, port, addresses, target)


def _vet_host(
    parts: SplitResult, url: str, scheme: str, settings: HttpSettings, resolve: Resolver | None
) -> tuple[str, int, tuple[str, ...]]:
    """(host, port, vetted addresses) of a parsed URL, or RefusedLocation/NetworkError."""
    host = _host_of(parts, url)
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        raise RefusedLocation(f"invalid port in {url!r}") from None
    if not 0 < port < 65536:
        raise RefusedLocation(f"invalid port in {url!r}")

    addresses = _resolve(host, port, resolve)
    allow = _AllowList(settings.allow_hosts)
    if not allow.admits_name(host):
        for address in addresses:
            ip = ipaddress.ip_address(address)
            reason = blocked_reason(ip)
            if reason is not None and not allow.admits_ip(ip):
                what = (
                    f"{address} is"
                    if host == address
                    else f"host {host!r} resolves to {address}, which is"
                )
                raise RefusedLocation(
                    f"refusing {url!r}: {what} {reason}; allow it with allow_hosts "
                    f"(the command line: ${ALLOW_HOSTS_ENV}) if that is intended"
                )
    return host, port, addresses


def blocked_reason(ip: IPAddress) -> str | None:
    """Why an address must not be fetched without an allow-list entry (a phrase such as
    "a loopback address"), or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        # Forms that embed an IPv4 address (mapped, 6to4, NAT64) are judged by it too.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(ip.packed[-4:])
        if embedded is not None:
            inner = blocked_reason(embedded)
            if inner is not None:
                return f"an IPv6 form of {embedded}, {inner}"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip in _METADATA:
        return "a link-local address (the cloud metadata endpoint)"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _ULA:
        return "a unique-local (ULA) address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a special-purpose (non-global) address"
    return None


class _AllowList:
    """Allow-list entries: exact host names, or IP addresses / CIDR networks."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.names: set[str] = set()
        self.networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.names.add(entry.rstrip("."))

    def admits_name(self, host: str) -> bool:
        return host.rstrip(".") in self.names

    def admits_ip(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        return any(c in net for c in candidates for net in self.networks)


def _host_of(parts: SplitResult, url: str) -> str:
    host = parts.hostname
    if not host:
        raise RefusedLocation(f"URL has no host: {url!r}")
    if "[" in parts.netloc:  # an IPv6 literal; urlsplit already checked the brackets
        try:
            ip = ipaddress.IPv6Address(host)
        except ValueError:
            raise RefusedLocation(f"invalid IPv6 literal in {url!r}") from None
        if ip.scope_id:
            raise RefusedLocation(f"IPv6 zone identifiers are not allowed: {url!r}")
        return str(ip)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise RefusedLocation(f"invalid international host name in {url!r}") from None
    if not _HOSTNAME.fullmatch(host):
        raise RefusedLocation(f"invalid host name {host!r} in {url!r}")
    return host


def _resolve(host: str, port: int, resolve: Resolver | None) -> tuple[str, ...]:
    try:
        # A canonical literal needs no resolver (and none may reinterpret it).
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        pass
    # Odd spellings (2130706433, 0177.0.0.1, 0x7f.1, 127.1) go through getaddrinfo like
    # any name: inet_aton accepts them, and what they resolve to is what gets vetted.
    try:
        if resolve is not None:
            found = list(resolve(host, port))
        else:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found = [str(info[4][0]) for info in infos]
    except (OSError, UnicodeError) as exc:
        raise NetworkError(f"cannot resolve host {host!r}: {exc}") from None
    addresses: list[str] = []
    for address in found:
        try:
            canonical = str(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            raise NetworkError(f"resolver gave a non-IP address {address!r} for {host!r}") from None
        if canonical not in addresses:
            addresses.append(canonical)
    if not addresses:
        raise NetworkError(f"host {host!r} resolves to no address")
    return tuple(addresses)
