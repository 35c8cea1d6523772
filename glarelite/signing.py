"""Signed mirror trees: Ed25519 keys, and one signature over a tree's root index.

The root index pins every type index by sha256 and each type index pins its blobs by
sha256, so a signature over the root's exact bytes covers the whole tree (as apt's
``InRelease`` does). A signed tree holds ``index.signed.json`` beside ``index.json``::

    {"format": "glarelite-signed-root/1",
     "root": "<the exact text of index.json>",
     "signatures": [{"key_id": "...", "alg": "ed25519", "sig": "<base64>"}]}

One file holds both the root and its signatures, so a reader that trusts keys reads
only that file and takes the root from inside it: there is no moment where a root and
its signature disagree. Several signatures allow a key rotation (see
docs/distributing.md).

Keys: a private key is a PEM (PKCS#8) file, written 0600 and never overwritten; a public
key is one line of base64 (the 32 raw bytes), in ``PRIVATE.pub`` beside it. A key id is
the first 16 hex digits of the sha256 of the raw public key.

Needs the ``cryptography`` package: ``pip install 'glarelite[sign]'``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import GlareliteError, InvalidInput, SignatureError

__all__ = [
    "ALG",
    "FORMAT",
    "MAX_SIGNATURES",
    "MAX_SIGNED_SIZE",
    "SIGNED_INDEX",
    "PublicKey",
    "SigningKey",
    "generate_key",
    "load_public_key",
    "load_signing_key",
    "root_generation",
    "sign_root",
    "verify_root",
]

SIGNED_INDEX = "index.signed.json"
FORMAT = "glarelite-signed-root/1"
ALG = "ed25519"
MAX_SIGNED_SIZE = 16 << 20  # a root pins type definitions only: far below this
MAX_SIGNATURES = 16
_MAX_KEY_FILE = 64 << 10
# Domain separation: a signature over a root can never be replayed as anything else.
_CONTEXT = (FORMAT + "\n").encode()


def _crypto() -> Any:
    """The Ed25519 primitives of ``cryptography``; a clear error when it is missing."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise GlareliteError(
            "signed trees need the cryptography package: pip install 'glarelite[sign]'"
        ) from None
    return ed25519


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key (its 32 raw bytes)."""

    raw: bytes

    def __post_init__(self) -> None:
        _crypto()  # fail early, with the install hint, not at the first verification
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise InvalidInput("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()[:16]

    def to_text(self) -> str:
        """The key as one line of base64, the format of a ``.pub`` file."""
        return base64.b64encode(self.raw).decode()

    def verify(self, signature: bytes, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        key = _crypto().Ed25519PublicKey.from_public_bytes(self.raw)
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class SigningKey:
    """An Ed25519 private key, loaded from its PEM file."""

    def __init__(self, private: Any) -> None:
        from cryptography.hazmat.primitives import serialization

        self._private = private
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = PublicKey(raw)

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def sign(self, message: bytes) -> bytes:
        return bytes(self._private.sign(message))

    def __repr__(self) -> str:  # never the secret
        return f"SigningKey(key_id={self.key_id!r})"


def generate_key(path: str | os.PathLike[str]) -> PublicKey:
    """Write a new private key to ``path`` (PEM, mode 0600) and its public key to
    ``path + ".pub"``; refuse (InvalidInput) when either file exists."""
    ed25519 = _crypto()
    from cryptography.hazmat.primitives import serialization

    private_path = os.fspath(path)
    public_path = private_path + ".pub"
    for p in (private_path, public_path):
        if os.path.lexists(p):
            raise InvalidInput(f"{p} exists: a key file is never overwritten")
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key = SigningKey(private)
    _write_new(private_path, pem, 0o600)
    _write_new(public_path, (key.public_key.to_text() + "\n").encode(), 0o644)
    return key.public_key


def _write_new(path: str, data: bytes, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise InvalidInput(f"{path} exists: a key file is never overwritten") from None
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _read_key_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_KEY_FILE:
        raise InvalidInput(f"{path} is too large to be a key file")
    return data


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """The private key in the PEM file at ``path`` (as ``generate_key`` writes it)."""
    _crypto()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    text = os.fspath(path)
    data = _read_key_file(text)
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{text} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise InvalidInput(f"{text} is not an Ed25519 private key")
    return SigningKey(private)


def load_public_key(key: PublicKey | SigningKey | bytes | str | os.PathLike[str]) -> PublicKey:
    """A public key from a ``PublicKey``, 32 raw bytes, one line of base64, or a file
    holding either that line (a ``.pub`` file) or a PEM public key."""
    if isinstance(key, PublicKey):
        return key
    if isinstance(key, SigningKey):
        return key.public_key
    if isinstance(key, bytes):
        return PublicKey(key)
    if not isinstance(key, (str, os.PathLike)):
        raise InvalidInput(f"a trusted key is a key, a file or base64 text, not {key!r}")
    text = os.fspath(key)
    if "\x00" in text:
        raise InvalidInput(f"not a public key: {text!r}")
    if os.path.isfile(text):
        data = _read_key_file(text)
        if data.lstrip().startswith(b"-----BEGIN"):
            return _pem_public(data, text)
        try:
            return _b64_public(data.decode("ascii"), text)
        except UnicodeDecodeError:
            raise InvalidInput(f"{text} holds no public key") from None
    return _b64_public(text, "the trusted key")


def _b64_public(text: str, where: str) -> PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            f"{where} is neither a key file nor base64 of an Ed25519 public key"
        ) from None
    if len(raw) != 32:
        raise InvalidInput(f"{where} is not an Ed25519 public key ({len(raw)} bytes, not 32)")
    return PublicKey(raw)


def _pem_public(data: bytes, where: str) -> PublicKey:
    _crypto()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{where} is not a PEM public key: {exc}") from None
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise InvalidInput(f"{where} is not an Ed25519 public key")
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(raw)


def sign_root(root: bytes, keys: Sequence[SigningKey]) -> bytes:
    """The content of ``index.signed.json`` for the root index bytes ``root``, signed by
    each key (Ed25519 is deterministic: the same root and keys give the same bytes)."""
    if not keys:
        raise InvalidInput("signing needs at least one key")
    if len({k.key_id for k in keys}) != len(keys):
        raise InvalidInput("the same signing key is given twice")
    try:
        text = root.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("a root index is UTF-8 text") from None
    message = _CONTEXT + root
    signed = {
        "format": FORMAT,
        "root": text,
        "signatures": [
            {"key_id": k.key_id, "alg": ALG, "sig": base64.b64encode(k.sign(message)).decode()}
            for k in keys
        ],
    }
    return (json.dumps(signed, indent=1) + "\n").encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {sorted(k for k in keys if keys.count(k) > 1)[0]!r}")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def verify_root(
    signed: bytes, trusted_keys: Iterable[PublicKey], *, where: str = SIGNED_INDEX
) -> bytes:
    """The root index bytes inside ``signed`` (an ``index.signed.json``), once a
    signature by one of ``trusted_keys`` verifies. Raises SignatureError when the file
    is malformed, when a signature by a trusted key does not verify, or when no trusted
    key signed it."""
    trusted = {k.key_id: k for k in trusted_keys}
    if not trusted:
        raise InvalidInput("verifying a signed root needs at least one trusted key")
    if not isinstance(signed, bytes):
        raise SignatureError(f"{where}: not bytes")
    if len(signed) > MAX_SIGNED_SIZE:
        raise SignatureError(f"{where} is larger than {MAX_SIGNED_SIZE} bytes: refused")
    try:
        data = json.loads(signed, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise SignatureError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SignatureError(f"{where} is not a signed root of format {FORMAT!r}")
    root, signatures = data.get("root"), data.get("signatures")
    if not isinstance(root, str) or not isinstance(signatures, list):
        raise SignatureError(f"{where} needs a text 'root' and a list of 'signatures'")
    if not 1 <= len(signatures) <= MAX_SIGNATURES:
        raise SignatureError(f"{where} holds {len(signatures)} signatures (1 to {MAX_SIGNATURES})")
    try:
        root_bytes = root.encode("utf-8")
    except UnicodeEncodeError:
        raise SignatureError(f"{where}: the root is not UTF-8 text") from None
    message = _CONTEXT + root_bytes
    seen: set[str] = set()
    good: list[str] = []
    others: list[str] = []
    for entry in signatures:
        if not isinstance(entry, dict) or set(entry) != {"key_id", "alg", "sig"}:
            raise SignatureError(f"{where}: a signature is not {{key_id, alg, sig}}")
        key_id, alg, sig = entry["key_id"], entry["alg"], entry["sig"]
        if not all(isinstance(v, str) for v in (key_id, alg, sig)):
            raise SignatureError(f"{where}: key_id, alg and sig are text")
        if key_id in seen:
            raise SignatureError(f"{where}: key {key_id[:40]!r} signs twice")
        seen.add(key_id)
        if alg != ALG:
            others.append(f"{key_id[:40]!r} ({alg[:20]!r}: unknown algorithm)")
            continue  # a later algorithm may sign beside ed25519 during a migration
        try:
            raw_sig = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError(
                f"{where}: the signature of {key_id[:40]!r} is not base64"
            ) from None
        if len(raw_sig) != 64:
            raise SignatureError(f"{where}: the signature of {key_id[:40]!r} is not 64 bytes")
        key = trusted.get(key_id)
        if key is None:
            others.append(f"{key_id[:40]!r} (not trusted)")
            continue
        if not key.verify(raw_sig, message):
            raise SignatureError(
                f"{where}: the signature of trusted key {key_id} does not verify: "
                "the root was altered, or signed by another key"
            )
        good.append(key_id)
    if not good:
        raise SignatureError(
            f"{where} is signed by no trusted key (signers: {', '.join(others)}; "
            f"trusted: {', '.join(sorted(trusted))})"
        )
    return root_bytes


def root_generation(root: bytes, *, where: str = SIGNED_INDEX) -> int:
    """The generation a root index's bytes declare (for the rollback check)."""
    try:
        data = json.loads(root, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise SignatureError(f"{where}: the signed root is not JSON: {exc}") from None
    generation = data.get("generation") if isinstance(data, dict) else None
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise SignatureError(f"{where}: the signed root has no valid generation")
    return generation
