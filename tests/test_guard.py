"""The location guard: what external URLs may be fetched (SSRF table, allow-list)."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

import glarelite
from glarelite._guard import check_url
from glarelite.errors import InvalidInput, NetworkError, RefusedLocation
from glarelite.settings import ALLOW_HOSTS_ENV, HttpSettings, RetryPolicy, parse_allow_hosts

# Names a test may resolve without DNS; anything else is a bug in the test.
FAKE_DNS = {
    "metadata.google.internal": ["169.254.169.254"],
    "files.example": ["93.184.216.34"],
    "files.internal": ["10.0.0.5"],
    "other.internal": ["10.0.0.5"],
    "sub.files.internal": ["10.0.0.6"],
    "mixed.internal": ["10.0.0.5", "192.168.0.7"],
    "dual.internal": ["127.0.0.1", "::1"],
}


def fake_resolve(host: str, port: int) -> Sequence[str]:
    if host.rstrip(".") in FAKE_DNS:
        return FAKE_DNS[host.rstrip(".")]
    if host == "localhost" or all(c in "0123456789abcdefx." for c in host):
        # Numeric spellings and localhost never reach DNS: let the real resolver answer.
        return [str(i[4][0]) for i in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    raise socket.gaierror(socket.EAI_NONAME, "unknown in FAKE_DNS")


@pytest.fixture(autouse=True)
def _no_env_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_HOSTS_ENV, raising=False)


REFUSED = [
    ("http://10.0.0.1/a", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://172.31.255.254/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://127.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "IPv6 form of 127.0.0.1, a loopback"),
    ("http://[::ffff:10.1.2.3]:8080/", "IPv6 form of 10.1.2.3, a private"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "unique-local"),
    ("http://[fd12:3456::1]/", "unique-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://100.64.0.1/", "non-global"),
    ("http://240.0.0.1/", "reserved"),
    ("http://2130706433/", "resolves to 127.0.0.1, which is a loopback"),
    ("http://0177.0.0.1/", "resolves to 127.0.0.1, which is a loopback"),
    ("http://0x7f000001/", "resolves to 127.0.0.1, which is a loopback"),
    ("http://0x7f.1/", "resolves to 127.0.0.1, which is a loopback"),
    ("http://0/", "unspecified"),
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ("ftp://files.example/pub/x.iso", "scheme 'ftp' is not allowed"),
    ("gopher://files.example/", "scheme 'gopher' is not allowed"),
    ("dict://files.example:11211/", "scheme 'dict' is not allowed"),
    ("//files.example/x", "scheme '(none)' is not allowed"),
    ("http://user:pw@files.example/", "userinfo"),
    ("http://user@files.example/", "userinfo"),
    ("http://files.example\\@127.0.0.1/", "userinfo"),
    ("http:///etc/passwd", "no host"),
    ("http://files.example:99999/", "invalid port"),
    ("http://files.example/a b", "whitespace"),
    ("http://files.example/\r\nX-Injected: 1", "control characters"),
    ("http://[::1/", "malformed"),
    ("http://[fe80::1%25eth0]/", "zone"),
    ("http://files.example\\.evil/", "invalid host name"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED, ids=[u for u, _ in REFUSED])
def test_refused(url: str, reason: str) -> None:
    with pytest.raises(RefusedLocation) as info:
        check_url(url, HttpSettings(), resolve=fake_resolve)
    assert reason in str(info.value)
    assert isinstance(info.value, InvalidInput)  # the catalog treats it as bad input


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f000001/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://localhost/",
    ],
)
def test_odd_spellings_refused_by_the_real_resolver(url: str) -> None:
    # No fake here: these never reach DNS, inet_aton / /etc/hosts answer them.
    with pytest.raises(RefusedLocation, match="loopback"):
        check_url(url, HttpSettings())


def test_public_host_gives_vetted_target() -> None:
    t = check_url("http://Files.Example:8080/a/b%20c?x=1&y=ä#frag", resolve=fake_resolve)
    assert (t.scheme, t.host, t.port, t.ip) == ("http", "files.example", 8080, "93.184.216.34")
    assert t.host_header == "files.example:8080"
    assert t.request_target == "/a/b%20c?x=1&y=%C3%A4"
    assert t.url == "http://Files.Example:8080/a/b%20c?x=1&y=ä"  # fragment dropped
    https = check_url("https://files.example/", resolve=fake_resolve)
    assert (https.port, https.host_header, https.request_target) == (443, "files.example", "/")


def test_unresolvable_host_is_a_network_error() -> None:
    with pytest.raises(NetworkError, match=r"cannot resolve host 'nowhere\.invalid'"):
        check_url("http://nowhere.invalid/", resolve=fake_resolve)


def test_scheme_list_is_configurable() -> None:
    only_https = HttpSettings(allowed_schemes=("HTTPS",))
    with pytest.raises(RefusedLocation, match="scheme 'http' is not allowed"):
        check_url("http://files.example/", only_https, resolve=fake_resolve)
    assert check_url("https://files.example/", only_https, resolve=fake_resolve).port == 443


# -- the allow-list admits exactly what it names ---------------------------------------
def allowed(*entries: str) -> HttpSettings:
    return HttpSettings(allow_hosts=entries)


@pytest.mark.parametrize(
    ("entries", "admitted", "refused"),
    [
        (("10.0.0.0/8",), ["http://10.1.2.3/", "http://files.internal/"], ["http://192.168.0.1/"]),
        (("10.0.0.0/24",), ["http://10.0.0.255/"], ["http://10.0.1.1/", "http://127.0.0.1/"]),
        (
            ("127.0.0.1",),
            ["http://127.0.0.1:8080/x", "http://127.1/", "http://2130706433/"],
            ["http://127.0.0.2/", "http://dual.internal/"],
        ),
        (
            ("files.internal",),
            ["http://files.internal/", "http://FILES.internal./"],
            ["http://other.internal/", "http://sub.files.internal/", "http://10.0.0.5/"],
        ),
        (("fd00::/8",), ["http://[fd00::1]/"], ["http://[fc00::1]/", "http://[::1]/"]),
        (("::1", "127.0.0.1"), ["http://dual.internal/", "http://[::1]/"], ["http://10.0.0.1/"]),
        (("127.0.0.1",), ["http://[::ffff:127.0.0.1]/"], ["http://[::ffff:127.0.0.2]/"]),
        (("10.0.0.5",), ["http://files.internal/"], ["http://mixed.internal/"]),
        (("169.254.169.254",), ["http://169.254.169.254/"], ["http://169.254.1.1/"]),
    ],
)
def test_allow_list(entries: tuple[str, ...], admitted: list[str], refused: list[str]) -> None:
    settings = allowed(*entries)
    for url in admitted:
        check_url(url, settings, resolve=fake_resolve)
    for url in refused:
        with pytest.raises(RefusedLocation):
            check_url(url, settings, resolve=fake_resolve)


def test_hostname_entry_admits_every_address_of_that_name() -> None:
    t = check_url("http://mixed.internal:81/", allowed("mixed.internal"), resolve=fake_resolve)
    assert t.addresses == ("10.0.0.5", "192.168.0.7")


def test_allow_list_does_not_bypass_scheme_or_userinfo_checks() -> None:
    settings = allowed("files.internal")
    with pytest.raises(RefusedLocation, match="userinfo"):
        check_url("http://a:b@files.internal/", settings, resolve=fake_resolve)
    with pytest.raises(RefusedLocation, match="scheme"):
        check_url("file://files.internal/etc/passwd", settings, resolve=fake_resolve)


def test_the_library_ignores_the_env_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    # An application embedding glarelite must not be widened by a variable it does not
    # know about: only the CLI reads $GLARELITE_ALLOW_HOSTS (tests/test_cli.py).
    monkeypatch.setenv(ALLOW_HOSTS_ENV, "10.0.0.0/24,files.internal,127.0.0.1")
    settings = HttpSettings()
    assert settings.allow_hosts == ()
    with pytest.raises(RefusedLocation):
        check_url("http://10.0.0.9/", settings)
    with pytest.raises(RefusedLocation):
        check_url("http://files.internal/", settings, resolve=fake_resolve)
    assert not hasattr(settings, "effective_allow_hosts")


def test_parse_allow_hosts() -> None:
    assert parse_allow_hosts(" 10.0.0.0/24 , files.internal,") == ("10.0.0.0/24", "files.internal")
    assert parse_allow_hosts("") == () and parse_allow_hosts(None) == ()
    settings = allowed(*parse_allow_hosts("10.0.0.0/24,files.internal"))
    check_url("http://10.0.0.9/", settings)
    check_url("http://files.internal/", settings, resolve=fake_resolve)
    with pytest.raises(RefusedLocation):
        check_url("http://10.0.1.9/", settings)


def test_library_catalog_ignores_the_env_allow_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fixtures.origin import Origin

    monkeypatch.setenv(ALLOW_HOSTS_ENV, "127.0.0.1")
    with Origin() as origin, glarelite.open(tmp_path / "c.db") as cat:
        origin.add("/x", data=b"x")
        cat.define_type("t", blobs=["file"])
        art = cat.create("t", "a")
        with pytest.raises(RefusedLocation):
            cat.add_location(art.id, "file", origin.url("/x"))
        assert origin.requests == []


# -- settings ----------------------------------------------------------------------------
def test_settings_are_frozen_and_validated() -> None:
    s = HttpSettings()
    with pytest.raises(AttributeError):
        s.max_redirects = 1  # type: ignore[misc]
    assert replace(s, max_redirects=1).max_redirects == 1
    assert s.retry == RetryPolicy()
    assert s.effective_user_agent().startswith("glarelite/")
    assert replace(s, user_agent="probe/1").effective_user_agent() == "probe/1"
    assert HttpSettings(allow_hosts=["a"]).allow_hosts == ("a",)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        HttpSettings(allow_hosts="127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        HttpSettings(chunk_size=0)
    with pytest.raises(InvalidInput):
        RetryPolicy(total=-1)
