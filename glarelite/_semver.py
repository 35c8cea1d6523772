"""Semantic Versioning 2.0 with Glare's friendly coercion, and a text key whose byte
order is semver precedence, so SQLite can index, compare and sort versions directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidInput

# Numbers wider than this cannot be encoded with the two-digit length prefix below; they
# are refused rather than mis-sorted.
MAX_DIGITS = 40
_IDENT = re.compile(r"[0-9A-Za-z-]+\Z")
_LEADING = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?(.*)\Z", re.DOTALL)


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    @property
    def key(self) -> str:
        """Precedence key (build metadata excluded): ``a.key < b.key`` iff ``a < b``."""
        core = "".join(_num(n) for n in (self.major, self.minor, self.patch))
        if not self.prerelease:
            return core + "~"  # '~' sorts above '-': a release is above its pre-releases
        parts = []
        for ident in self.prerelease:
            # numeric identifiers sort below alphanumeric ones; '!' ends an identifier and
            # sorts below every identifier character, so 'alpha' < 'alpha.1' < 'alphabet'.
            parts.append(("0" + _num(_int(ident))) if ident.isdigit() else ("1" + ident))
        return core + "-" + "!".join(parts) + "!"


def _num(n: int) -> str:
    digits = str(n)
    if len(digits) > MAX_DIGITS:
        raise InvalidInput(f"version component {digits[:12]}... has more than {MAX_DIGITS} digits")
    return f"{len(digits):02d}{digits}"


def _int(digits: str) -> int:
    # Checked before int(): past 4,300 digits int() itself raises a bare ValueError.
    if len(digits) > MAX_DIGITS:
        raise InvalidInput(f"version component {digits[:12]}... has more than {MAX_DIGITS} digits")
    return int(digits)


def _identifiers(text: str, what: str, original: str) -> tuple[str, ...]:
    if text == "":
        raise InvalidInput(f"invalid version {original!r}: empty {what}")
    idents = tuple(text.split("."))
    for ident in idents:
        if not _IDENT.match(ident):
            raise InvalidInput(f"invalid version {original!r}: bad {what} identifier {ident!r}")
    return idents


def parse(value: object) -> Version:
    """Parse and coerce: ``1`` -> 1.0.0, ``1.2`` -> 1.2.0, ``1-beta`` -> 1.0.0-beta,
    ``1.2.3.4`` -> 1.2.3+4, None -> 0.0.0. Raises InvalidInput otherwise."""
    if value is None:
        return Version(0, 0, 0)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput(f"invalid version {value!r}: expected text such as '1.2.3'")
    text = str(value).strip()
    m = _LEADING.match(text)
    if not m:
        raise InvalidInput(f"invalid version {value!r}: must start with a number, e.g. '1.2.3'")
    major, minor, patch, fourth, rest = m.groups()
    build: tuple[str, ...] = ()
    prerelease: tuple[str, ...] = ()
    if fourth is not None:
        if rest.startswith("-"):
            raise InvalidInput(f"invalid version {value!r}: pre-release after a 4th component")
        build = (fourth,)
    if rest:
        body, plus, build_text = rest.partition("+")
        if body:
            if not body.startswith("-"):
                raise InvalidInput(f"invalid version {value!r}: unexpected {body!r}")
            prerelease = _identifiers(body[1:], "pre-release", text)
            for ident in prerelease:
                if ident.isdigit() and len(ident) > 1 and ident.startswith("0"):
                    raise InvalidInput(
                        f"invalid version {value!r}: numeric pre-release {ident!r} has a "
                        "leading zero"
                    )
        if plus:
            build = build + _identifiers(build_text, "build", text)
    version = Version(_int(major), _int(minor or "0"), _int(patch or "0"), prerelease, build)
    version.key  # noqa: B018 - raises InvalidInput for components too wide to order
    return version


def canonical(value: object) -> tuple[str, str]:
    """(canonical text, precedence key) of a version given by a user."""
    v = parse(value)
    return str(v), v.key
