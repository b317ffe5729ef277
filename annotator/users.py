"""Who may sign in, and with which role: password hashing and the users file. Pure: imports only ``types``.

A users file (``ANNOTATOR_USERS_FILE``, else ``<data>/users.txt`` when it exists) has one user a line,
``name:hash:role``, where ``hash`` is ``scrypt$n$r$p$salt$digest`` (salt and digest base64, from the standard
library's ``hashlib.scrypt``) and ``role`` one of ``ROLES``. ``#`` comments and blank lines are allowed. An
old-style ``name:password`` line (plain text) is still accepted, as an admin, with a warning to rewrite it
with ``annotator users add``. ``ANNOTATOR_AUTH=user:pass,...`` users are admins too.

Roles are ordered: a viewer reads; an annotator also uploads, reviews, auto-annotates and exports; an admin
also changes projects and classes, models, splits and training (``ROLES``: lowest first).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .types import UserError

log = logging.getLogger("annotator.users")

ROLES = ("viewer", "annotator", "admin")  # lowest first: each role may do what the ones before it may
SCHEME = "scrypt"
# 16 MiB of memory and ~50 ms a hash: costly enough for an offline guess, cheap enough for a sign-in.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P,
                  salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$digest`` for ``password`` with a random 16-byte salt (self-describing: the
    parameters travel with the hash, so stronger ones later still verify the old hashes)."""
    if not password:
        raise UserError("The password is empty")
    salt = secrets.token_bytes(16) if salt is None else salt
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(_scrypt(password, salt, n, r, p))}"


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    """The parts of a stored hash; ValueError when it is not one we wrote."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError(f"not a {SCHEME}$n$r$p$salt$hash string")
    n, r, p = (int(x) for x in parts[1:4])
    if n < 2 or n & (n - 1) or not (1 <= r <= 64) or not (1 <= p <= 16) or n * r * 128 * 2 > _MAXMEM:
        raise ValueError(f"scrypt parameters out of range (n={n}, r={r}, p={p})")
    salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    if len(salt) < 8 or len(digest) != 32:
        raise ValueError("salt or hash of the wrong length")
    return n, r, p, salt, digest


def is_hash(text: str) -> bool:
    return text.startswith(SCHEME + "$")


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the stored hash (compared in constant time); False for a bad hash."""
    try:
        n, r, p, salt, digest = _parse_hash(encoded)
    except ValueError:
        return False
    return secrets.compare_digest(_scrypt(password or "", salt, n, r, p), digest)


_DUMMY: list[str] = []


def dummy_hash() -> str:
    """A hash of a random password with the default parameters, made once: checking a name that does not
    exist costs the same hash as checking one that does, so the answer's timing does not tell them apart."""
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_urlsafe(16)))
    return _DUMMY[0]


def role_rank(role: str | None) -> int:
    return ROLES.index(role) if role in ROLES else -1


def check_role(role: str, origin: str) -> str:
    value = (role or "").strip().lower()
    if value not in ROLES:
        raise UserError(f"{origin}: unknown role {role!r} (roles: {', '.join(ROLES)})")
    return value


def check_name(name: str, origin: str) -> str:
    value = (name or "").strip()
    if not value or ":" in value or any(c.isspace() or ord(c) < 32 for c in value) or value.startswith("#"):
        raise UserError(f"{origin}: user name {name!r} must be non-empty, without ':' or spaces, not start with '#'")
    return value


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str | None = field(default=None, repr=False)  # scrypt$...; None: a plain password
    plain: str | None = field(default=None, repr=False)  # ANNOTATOR_AUTH and old-style file lines
    origin: str = ""

    def line(self) -> str:
        """Its line in a users file."""
        if self.password_hash is None:
            raise UserError(f"user {self.name!r} has a plain-text password; set a new one with annotator users add")
        return f"{self.name}:{self.password_hash}:{self.role}"


class Users:
    """The users who may sign in. Empty: the app runs without login, and everyone acting is an admin (unless
    ``login_required``: an app started with login that has no users left lets nobody in)."""

    def __init__(self, users: Iterable[User] = (), login_required: bool | None = None):
        self._login = login_required
        self._users: dict[str, User] = {}
        for u in users:
            if u.name in self._users:
                raise UserError(f"user {u.name!r} is listed twice ({self._users[u.name].origin} and {u.origin})")
            self._users[u.name] = u

    def __len__(self) -> int:
        return len(self._users)

    def __bool__(self) -> bool:
        return bool(self._users)

    def __iter__(self):
        return iter(self._users.values())

    def __repr__(self) -> str:
        return f"Users({', '.join(f'{u.name}:{u.role}' for u in self) or 'no login'})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Users) and list(self) == list(other)

    __hash__ = None

    @property
    def login_required(self) -> bool:
        return bool(self._users) if self._login is None else self._login

    def current(self) -> "Users":
        """These users (a ``UsersFile`` answers the users as its file says now)."""
        return self

    def get(self, name: str | None) -> User | None:
        return self._users.get(name or "")

    def role(self, name: str | None) -> str | None:
        """The role of ``name``: admin for anyone when no login is configured; None for an unknown name."""
        if not self.login_required:
            return "admin"
        u = self._users.get(name or "")
        return u.role if u else None

    def plain_pairs(self) -> tuple[tuple[str, str], ...]:
        """(name, password) of the users whose password is configured in plain text (ANNOTATOR_AUTH)."""
        return tuple((u.name, u.plain) for u in self if u.plain is not None)

    def verify(self, name: str, password: str) -> bool:
        """Whether ``password`` is ``name``'s, compared in constant time. When any user has a hashed password,
        every check computes one hash (a dummy one for an unknown name or a plain-text password), so timing
        tells nothing about which names exist; with plain-text users only (ANNOTATOR_AUTH), none does."""
        u = self._users.get(name or "")
        password = password or ""
        if u is None or u.password_hash is None:
            if any(x.password_hash is not None for x in self._users.values()):  # as costly as a real check
                verify_password(password, dummy_hash())
            expected = u.plain if u is not None else "\0"  # compared either way: the same time for any name
            same = secrets.compare_digest(password.encode("utf-8"), (expected or "\0").encode("utf-8"))
            return u is not None and same
        return verify_password(password, u.password_hash)


class UsersFile:
    """The users of an app started with login, as its users file says NOW: ``current()`` re-reads the file
    when it changed (``annotator users add|remove`` while the app runs takes effect at the next sign-in or
    write, without a restart), plus the fixed ``ANNOTATOR_AUTH`` users. A file that no longer parses keeps
    the users as they were (logged); a file emptied or removed lets nobody but the fixed users in."""

    def __init__(self, initial: Users, path: Path, fixed: Sequence[User] = ()):
        self._users, self._path, self._fixed = initial, path, list(fixed)
        self._stamp = self._stat()
        self._lock = threading.Lock()

    def _stat(self):
        try:
            st = self._path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def current(self) -> Users:
        stamp = self._stat()
        if stamp == self._stamp:
            return self._users
        with self._lock:
            if stamp == self._stamp:
                return self._users
            try:
                users = Users([*self._fixed, *(read_users_file(self._path) if stamp else [])], login_required=True)
            except UserError as e:
                log.error("%s; keeping the users as they were", e)
            else:
                log.info("users file %s changed: %s", self._path, users)
                self._users = users
            self._stamp = stamp
            return self._users

    def __repr__(self) -> str:
        return f"UsersFile({self._path}: {self._users!r})"


def parse_users_file(text: str, origin: str) -> list[User]:
    """The users of a users file's ``text``; ``origin`` (the file) names it in errors, with the line."""
    users: list[User] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{origin}, line {n}"
        name, sep, rest = line.partition(":")
        if not sep or not rest:
            raise UserError(f"{where}: expected name:hash:role (or an old-style name:password), got "
                            f"{name.strip()[:40] or '<empty>'!r}...")
        name = check_name(name, where)
        if is_hash(rest):
            secret, sep, role = rest.rpartition(":")
            if not sep:
                raise UserError(f"{where}: user {name!r} has no role (expected name:hash:role; roles: "
                                f"{', '.join(ROLES)})")
            try:
                _parse_hash(secret)
            except ValueError as e:
                raise UserError(f"{where}: user {name!r} has a bad password hash ({e}); set it again with "
                                f"annotator users add {name} --update") from None
            user = User(name, check_role(role, where), password_hash=secret, origin=where)
        else:
            log.warning("%s: user %r has a plain-text password (taken as an admin); store a hash instead: "
                        "annotator users add %s --role admin --update", where, name, name)
            user = User(name, "admin", plain=rest, origin=where)
        if name in seen:
            raise UserError(f"{where}: user {name!r} is listed twice (also on line {seen[name]})")
        seen[name] = n
        users.append(user)
    return users


def read_users_file(path: Path) -> list[User]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"users file {path}: cannot read it ({e.strerror or e})") from None
    return parse_users_file(text, f"users file {path}")


def write_users_file(path: Path, users: Sequence[User], header: str = "") -> None:
    """Write ``users`` to ``path`` atomically (a temporary file in the same folder, then a rename) with mode
    0600: only the owner reads the hashes. Users with plain-text passwords cannot be written."""
    lines = [u.line() for u in users]
    head = header or ("# Auto Annotator users: name:scrypt-hash:role (roles: " + ", ".join(ROLES) +
                      "). Edit with: annotator users add|remove|list\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".users-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(head + "".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def upsert_user(path: Path, name: str, password: str, role: str, *, update: bool = False) -> User:
    """Add ``name`` to the users file at ``path`` (created when missing); with ``update`` an existing
    ``name`` gets the new password and role (without it, an existing name is refused). Old-style plain-text lines are kept only if they are not ``name``; a plain line elsewhere is refused
    (it cannot be written back without its password in the clear)."""
    name = check_name(name, "annotator users add")
    role = check_role(role, "annotator users add")
    users = read_users_file(path) if path.exists() else []
    exists = any(u.name == name for u in users)
    if exists and not update:
        raise UserError(f"user {name!r} already exists in {path}; use --update to change the password or role")
    plain = [u.name for u in users if u.password_hash is None and u.name != name]
    if plain:
        raise UserError(f"{path} has plain-text password(s) for {', '.join(plain)}: set each with "
                        f"annotator users add NAME --update first (or remove the line)")
    new = User(name, role, password_hash=hash_password(password), origin=str(path))
    users = [new if u.name == name else u for u in users] if exists else [*users, new]
    write_users_file(path, users)
    return new


def remove_user(path: Path, name: str) -> None:
    users = read_users_file(path) if path.exists() else []
    if not any(u.name == name for u in users):
        raise UserError(f"no user {name!r} in {path}")
    keep = [u for u in users if u.name != name]
    if any(u.password_hash is None for u in keep):
        raise UserError(f"{path} has plain-text password lines; set them with annotator users add NAME --update first")
    write_users_file(path, keep)


__all__ = ["ROLES", "User", "Users", "UsersFile", "hash_password", "verify_password", "dummy_hash", "role_rank",
           "parse_users_file", "read_users_file", "write_users_file", "upsert_user", "remove_user"]
