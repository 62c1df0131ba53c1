"""Who may do what: API keys with scopes, and the audit trail of writes and searches.

Keys are random secrets (``fdb_`` + 43 URL-safe characters, 256 bits); the catalog stores only
their SHA-256, so a copy of the database gives no usable key. A presented key is hashed and
looked up by that hash, then compared with ``hmac.compare_digest``: no timing depends on how
much of a guess was right. A key found active is trusted for ``KEY_TRUST_S`` without asking the
catalog again (a server checks a key on every request); revoking it through this process forgets
it at once, so it fails on the next request. A key revoked by another process sharing the stores
(PostgreSQL) fails within ``KEY_TRUST_S``.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from ..catalog.database import Catalog
from ..catalog.models import utcnow
from ..errors import AuthError, FacedbError, ForbiddenError

Scope = Literal["read", "write", "admin"]
#: Each scope includes the ones before it.
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
KEY_PREFIX = "fdb_"
LOCAL_ACTOR = "local"
#: The actor of a request refused for want of a valid key (the key presented is never recorded).
ANONYMOUS_ACTOR = "(no valid key)"

#: Seconds a key found active is trusted without a catalog read (see the module's docstring).
KEY_TRUST_S = 2.0
#: Keys trusted at once at most (more, and the oldest half is forgotten).
KEY_TRUST_MAX = 1024

log = logging.getLogger(__name__)
_actor: ContextVar[str] = ContextVar("facedb_actor", default=LOCAL_ACTOR)


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def allows(have: str, need: Scope) -> bool:
    return have in SCOPES and SCOPES.index(have) >= SCOPES.index(need)


def validate_key_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip() or len(name) > 128 \
            or any(not ch.isprintable() for ch in name):
        raise FacedbError(f"key name {name!r}: use 1-128 printable characters, no leading/trailing blanks")
    return name


def validate_scope(scope: str) -> Scope:
    if scope not in SCOPES:
        raise FacedbError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    return scope


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Audit the calls made inside as ``actor`` (an API key's name); the default is ``local``."""
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor() -> str:
    return _actor.get()


#: Actions whose audit entries are written in batches: they come by the hundred and never name a
#: subject (so a delete never has to scrub one that is not written yet). Each keeps its own time
#: (and the trail is read in time order). ``refused``: a 401 or 403 answered by the server.
BATCHED_ACTIONS = frozenset({"search", "search_face", "refused"})
FLUSH_EVERY_S = 0.5
FLUSH_AT = 200


def _allowed(name: str, scope: str, limit: str | None, need: Scope, collection: str | None,
             any_collection: bool) -> tuple[str, str]:
    """(name, scope) of an active key if its scope allows ``need`` on ``collection``, else
    ``ForbiddenError`` (with the key's name, for the audit trail)."""
    if not allows(scope, need):
        exc = ForbiddenError(f"API key {name!r} has scope {scope!r}; this call needs {need!r}")
        exc.key_name = name  # type: ignore[attr-defined]  # who was refused, for the audit trail
        raise exc
    if limit is not None and collection != limit and not any_collection:
        where = f"collection {collection!r}" if collection is not None else "this server-wide call"
        exc = ForbiddenError(f"API key {name!r} is limited to collection {limit!r}; it cannot be used for {where}")
        exc.key_name = name  # type: ignore[attr-defined]
        raise exc
    return name, scope


class Gatekeeper:
    """Checks API keys against the catalog and records the audit trail."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        #: one flush at a time: a flush (on close) waits for the timer's write, so that no write
        #: outlives the catalog's close, and batches are written in the order they were taken
        self._flushing = threading.Lock()
        self._timer: threading.Timer | None = None
        #: hash -> (name, scope, collection limit, trusted until (monotonic)): active keys seen lately
        self._trusted: dict[str, tuple[str, str, str | None, float]] = {}
        self._trust_lock = threading.Lock()
        self._trust_epoch = 0  # moves at each forget_keys: a lookup that began before is not kept

    def forget_keys(self) -> None:
        """Ask the catalog again for every key (after a key was revoked)."""
        with self._trust_lock:
            self._trust_epoch += 1
            self._trusted = {}

    def authenticate_trusted(self, presented: str | None, need: Scope, collection: str | None = None, *,
                             any_collection: bool = False) -> tuple[str, str] | None:
        """``authenticate`` without the catalog, for a key found active less than ``KEY_TRUST_S``
        ago: (name, scope), or ``ForbiddenError``; None when the key is not trusted now (ask
        ``authenticate``). No I/O: an event loop may call it."""
        if not presented:
            return None
        digest = key_hash(presented)
        hit = self._trusted.get(digest)
        if hit is None or hit[3] < time.monotonic():
            return None
        return _allowed(hit[0], hit[1], hit[2], need, collection, any_collection)

    def authenticate(self, presented: str | None, need: Scope, collection: str | None = None, *,
                     any_collection: bool = False) -> tuple[str, str]:
        """(name, scope) of the key, if it is active, its scope allows ``need`` and it may use
        ``collection`` (the request's; None for a server-wide call: keys, audit, collections,
        vacuum). A key limited to one collection is refused (403) anywhere else, server-wide
        calls included: they would show or change other collections. ``any_collection``: a call
        about the key itself (``whoami``), which any valid key may make."""
        if not presented:
            raise AuthError("an API key is required: send the header 'Authorization: Bearer <key>'")
        digest = key_hash(presented)
        epoch = self._trust_epoch
        found = self.catalog.active_key(digest)
        if found is None or not hmac.compare_digest(found[2], digest):
            raise AuthError("unknown or revoked API key")
        name, scope, _, limit = found
        with self._trust_lock:
            if epoch == self._trust_epoch:  # no key was revoked here during the read
                if len(self._trusted) >= KEY_TRUST_MAX:
                    self._trusted = dict(list(self._trusted.items())[KEY_TRUST_MAX // 2:])
                self._trusted[digest] = (name, scope, limit, time.monotonic() + KEY_TRUST_S)
        return _allowed(name, scope, limit, need, collection, any_collection)

    @contextmanager
    def audited(self, action: str, subject: str | None = None, detail: str | None = None,
                collection: str | None = None) -> Iterator[Callable[..., None]]:
        """Record one audit entry for the call inside (on ``collection``: None for a server-wide
        call): its counts via ``note(images, faces, partial, detail, subject=...)``, or the
        error kind it raised."""
        entry: dict[str, Any] = {"images": 0, "faces": 0, "outcome": "ok", "detail": detail, "subject": subject}

        def note(images: int, faces: int, partial: bool = False, text: str | None = None,
                 subject: str | None = None) -> None:
            entry.update(images=images, faces=faces, outcome="partial" if partial else "ok", detail=text or detail)
            if subject is not None:  # a renamed or deleted subject is recorded under its new label
                entry["subject"] = subject

        try:
            yield note
        except FacedbError as exc:
            self.record(action, entry["subject"], entry["images"], entry["faces"], "error", exc.reason,
                        collection=collection)
            raise
        self.record(action, entry["subject"], entry["images"], entry["faces"], entry["outcome"], entry["detail"],
                    collection=collection)

    def record(self, action: str, subject: str | None = None, images: int = 0, faces: int = 0,
               outcome: str = "ok", detail: str | None = None, collection: str | None = None,
               actor: str | None = None) -> None:
        """Append one audit entry; never fails the call it describes (a failure is logged).

        Searches are written in batches (within ``FLUSH_EVERY_S``, and at ``flush``): one
        commit per search would cost more than the search's own database work."""
        row = {"actor": actor or current_actor(), "action": action, "subject": subject, "images": images,
               "faces": faces, "outcome": outcome, "detail": detail, "at": utcnow(), "collection": collection}
        if action not in BATCHED_ACTIONS:
            self._write([row])
            return
        with self._lock:
            self._pending.append(row)
            full = len(self._pending) >= FLUSH_AT
            if not full and self._timer is None:
                self._timer = threading.Timer(FLUSH_EVERY_S, self.flush)
                self._timer.daemon = True
                self._timer.start()
        if full:
            self.flush()

    def flush(self) -> None:
        """Write the batched entries now (the facade calls it on close and before reading the trail);
        returns once they, and any batch another thread was writing, are in the catalog."""
        with self._flushing:
            with self._lock:
                rows, self._pending = self._pending, []
                timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
            if rows:
                self._write(rows)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            self.catalog.add_audits(rows)
        except Exception:  # pragma: no cover - e.g. a read-only database, a store that is down
            log.exception("could not record %d audit entries (%s)", len(rows), rows[0]["action"])
