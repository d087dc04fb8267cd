"""Ed25519 signing keys: creation (mode 0600, atomic), loading, key ids, rotation.

Key directory layout (``guard keys init --dir DIR``)::

    DIR/signing.key        the private key, PKCS#8 PEM, mode 0600 (never printed or logged)
    DIR/signing.pub        its public key, SubjectPublicKeyInfo PEM
    DIR/pub/<key_id>.pub   every public key this directory ever had (kept across rotations)

The key id is the first 16 hex digits of SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from guard.audit.records import AuditError

PRIVATE_NAME = "signing.key"
PUBLIC_NAME = "signing.pub"
ARCHIVE_DIR = "pub"


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of a public key."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class Signer:
    """An Ed25519 private key with its key id; signs bytes. Its repr shows only the id."""

    __slots__ = ("_key", "key_id", "public_key")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    @classmethod
    def generate(cls) -> Signer:
        """A fresh in-memory key (tests, benchmarks)."""
        return cls(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        """64-byte Ed25519 signature of ``data``."""
        return self._key.sign(data)

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    def __reduce__(self) -> object:  # never let a private key travel by pickle
        raise TypeError("a Signer cannot be pickled")


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature of ``data``."""
    try:
        public_key.verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def load_signer(path: str | os.PathLike[str]) -> Signer:
    """Load a private key from a PEM file, or from ``DIR/signing.key`` if ``path`` is a directory.

    Refuses a key file readable by group or others (as ssh does).
    """
    p = Path(path)
    if p.is_dir():
        p = p / PRIVATE_NAME
    try:
        st = p.stat()
        if st.st_mode & 0o077:
            raise AuditError(f"{p}: private key is accessible by group/others (chmod 600 it)")
        data = p.read_bytes()
    except OSError as exc:
        raise AuditError(f"cannot read private key {p}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise AuditError(f"{p}: not a PEM private key") from None  # no key material in messages
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"{p}: not an Ed25519 private key")
    return Signer(key)


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """One Ed25519 public key from a PEM file."""
    p = Path(path)
    try:
        key = serialization.load_pem_public_key(p.read_bytes())
    except OSError as exc:
        raise AuditError(f"cannot read public key {p}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise AuditError(f"{p}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"{p}: not an Ed25519 public key")
    return key


def load_public_keys(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
) -> dict[str, Ed25519PublicKey]:
    """Key id -> public key, from PEM files and/or directories of ``*.pub`` / ``*.pem``.

    A key directory contributes ``signing.pub`` and everything under ``pub/``, so
    logs signed before a rotation stay verifiable.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        p = Path(path)
        if p.is_dir():
            files = sorted(
                f for d in (p, p / ARCHIVE_DIR) if d.is_dir()
                for f in d.iterdir() if f.suffix in (".pub", ".pem") and f.is_file()
            )
            if not files:
                raise AuditError(f"{p}: no *.pub or *.pem public keys in this directory")
        else:
            files = [p]
        for f in files:
            key = load_public_key(f)
            keys[key_id_of(key)] = key
    return keys


def _write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Write ``data`` to ``path`` atomically, created with ``mode`` from the start.

    The temporary file is opened O_EXCL with the final mode, so the key is never
    readable by others even for an instant; it is then linked (refusing to replace
    an existing file) or, with ``force``, renamed over the old one.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)  # the umask can only remove bits; make the mode exact
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path exists: no overwrite
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def init_key(directory: str | os.PathLike[str], *, force: bool = False) -> str:
    """Create ``DIR/signing.key`` (0600) and export its public key; returns the key id.

    Refuses to overwrite an existing private key unless ``force``.
    """
    d = Path(directory)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    priv = d / PRIVATE_NAME
    if priv.exists() and not force:
        raise AuditError(f"{priv} exists; refusing to overwrite it (use --force, or rotate)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub = key.public_key()
    kid = key_id_of(pub)
    archive = d / ARCHIVE_DIR
    archive.mkdir(mode=0o755, exist_ok=True)
    # public parts first: a crash must never leave a private key whose public half is lost
    _write_new(archive / f"{kid}.pub", public_pem(pub), 0o644, force=True)
    try:
        _write_new(priv, pem, 0o600, force=force)
    except FileExistsError:
        raise AuditError(f"{priv} exists; refusing to overwrite it (use --force)") from None
    _write_new(d / PUBLIC_NAME, public_pem(pub), 0o644, force=True)
    return kid


def rotate_key(directory: str | os.PathLike[str]) -> tuple[str, str]:
    """Replace the signing key with a new one; returns (old key id, new key id).

    The old private key is replaced (so it can sign nothing more); its public key
    stays in ``DIR/pub/`` so logs it signed remain verifiable.
    """
    d = Path(directory)
    old = load_signer(d)
    archive = d / ARCHIVE_DIR
    archive.mkdir(mode=0o755, exist_ok=True)
    old_pub = archive / f"{old.key_id}.pub"
    if not old_pub.exists():
        _write_new(old_pub, public_pem(old.public_key), 0o644, force=True)
    new = init_key(d, force=True)
    return old.key_id, new


def is_private_mode_ok(path: str | os.PathLike[str]) -> bool:
    """True if the file is a regular file readable by its owner only."""
    st = os.stat(path)
    return stat.S_ISREG(st.st_mode) and not st.st_mode & 0o077


PublicKeys = Mapping[str, Ed25519PublicKey]
