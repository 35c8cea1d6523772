"""Immutable settings for fetching external locations.

Settings are frozen dataclasses: derive a variation with :func:`dataclasses.replace`,
e.g. ``replace(HttpSettings(), allow_hosts=("127.0.0.1",))``. Nothing here reads the
environment: the library takes explicit configuration only, so an application embedding
it is never widened by a variable it does not know about. The command line reads
``$GLARELITE_ALLOW_HOSTS`` (:data:`ALLOW_HOSTS_ENV`) and passes it in as ``allow_hosts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InvalidInput

ALLOW_HOSTS_ENV = "GLARELITE_ALLOW_HOSTS"
MIB = 1024 * 1024


def _version() -> str:
    from importlib import metadata  # lazily: ~10 ms of `import glarelite` otherwise

    try:
        return metadata.version("glarelite")
    except metadata.PackageNotFoundError:  # running from a bare checkout
        return "0"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed request is retried.

    ``total`` counts retries, not attempts: at most ``total + 1`` requests per fetch,
    resumes included. The fetcher turns this into a urllib3 ``Retry``, which counts and
    computes the waits: the first retry is immediate, the n-th waits
    ``min(backoff_max, backoff_factor * 2**(n-1) + uniform(0, jitter))``, unless the reply
    carried a ``Retry-After`` (honoured when ``respect_retry_after``, capped at
    ``max_retry_after``).
    """

    total: int = 5
    backoff_factor: float = 0.2
    backoff_max: float = 10.0
    jitter: float = 0.2
    status_forcelist: tuple[int, ...] = (429, 500, 502, 503, 504)
    respect_retry_after: bool = True
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.total < 0:
            raise InvalidInput(f"retry total must be >= 0, not {self.total}")
        for name in ("backoff_factor", "backoff_max", "jitter", "max_retry_after"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"retry {name} must be >= 0, not {getattr(self, name)}")
        # A list would make the frozen object mutable through the back door.
        object.__setattr__(self, "status_forcelist", tuple(self.status_forcelist))


@dataclass(frozen=True)
class HttpSettings:
    """Everything the fetcher of external blobs may be told.

    ``allow_hosts`` admits hosts the location guard would refuse (loopback, private, ...):
    hostnames (exact, case-insensitive) or IP addresses / CIDR networks. ``ca_certs``
    names a PEM bundle to trust instead of the system store (private CAs, tests).
    ``pipeline_depth`` is how many GETs :meth:`Catalog.open_blobs` sends ahead on one
    connection (HTTP/1.1 pipelining; fewer when the requests written ahead would pass
    32 KiB, so they always fit in the socket buffers); 1 turns pipelining off.

    Registering a location (``add_location``, and ``check`` re-validating one) has a
    total deadline besides the per-read ``read_timeout``: it may take ``deadline_base``
    seconds plus one second per ``min_rate`` bytes received, retries and waits
    included, else it fails with NetworkError. It grows with the bytes that arrive, not
    with a declared size a hostile server could inflate; so an origin sending its body
    or headers at a trickle, or ``100 Continue`` without end, is cut off. A single read
    may overrun it by at most ``read_timeout``.
    """

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_redirects: int = 5
    allowed_schemes: tuple[str, ...] = ("http", "https")
    allow_hosts: tuple[str, ...] = ()
    chunk_size: int = MIB
    user_agent: str | None = None
    ca_certs: str | None = None
    pipeline_depth: int = 32
    min_rate: float = 10 * 1024  # bytes/s a registration must average past deadline_base
    deadline_base: float = 60.0  # seconds a registration may take before any byte counts

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise InvalidInput("timeouts must be > 0")
        if self.max_redirects < 0:
            raise InvalidInput(f"max_redirects must be >= 0, not {self.max_redirects}")
        if not self.min_rate > 0:  # also refuses NaN
            raise InvalidInput(f"min_rate must be > 0 bytes/s, not {self.min_rate}")
        if not self.deadline_base >= 0:
            raise InvalidInput(f"deadline_base must be >= 0 seconds, not {self.deadline_base}")
        if self.chunk_size <= 0:
            raise InvalidInput(f"chunk_size must be > 0, not {self.chunk_size}")
        if self.user_agent is not None and (
            not isinstance(self.user_agent, str)
            or not self.user_agent.isprintable()
            or any(ord(ch) > 0xFF for ch in self.user_agent)
        ):  # it goes into a request header: no CR/LF smuggling, latin-1 as http.client sends
            raise InvalidInput(
                f"user_agent must be printable latin-1 text, not {self.user_agent!r}"
            )
        if isinstance(self.pipeline_depth, bool) or not 1 <= self.pipeline_depth <= 1024:
            raise InvalidInput(f"pipeline_depth must be 1..1024, not {self.pipeline_depth!r}")
        for name in ("allowed_schemes", "allow_hosts"):
            value: object = getattr(self, name)
            if isinstance(value, str):  # ("http") is a str, not a one-element tuple
                raise InvalidInput(f"{name} must be a sequence of strings, not {value!r}")
        schemes = tuple(s.lower() for s in self.allowed_schemes)
        unknown = sorted(set(schemes) - {"http", "https"})
        if unknown:  # the fetcher speaks nothing else; a typo must not pass silently
            raise InvalidInput(f"unsupported schemes in allowed_schemes: {unknown}")
        object.__setattr__(self, "allowed_schemes", schemes)
        object.__setattr__(self, "allow_hosts", tuple(self.allow_hosts))

    def effective_user_agent(self) -> str:
        return self.user_agent or f"glarelite/{_version()}"


def parse_allow_hosts(text: str | None) -> tuple[str, ...]:
    """The entries of a comma-separated allow list (as ``$GLARELITE_ALLOW_HOSTS`` holds)."""
    return tuple(e.strip() for e in (text or "").split(",") if e.strip())
