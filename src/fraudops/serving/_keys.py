"""API keys: who may call the serving API, for which tenant; only their SHA-256 is stored.

A key is ``fo_`` followed by 32 URL-safe characters (192 random bits from :mod:`secrets`),
shown once by :meth:`ApiKeys.create`. The database holds its SHA-256, so a leaked database
or backup yields no usable key, and a short ``key_id`` (the 8 characters after ``fo_``) by
which operators list and revoke keys without ever handling the secret again.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from datetime import UTC, datetime

from fraudops.core import InputError, StoreError

from ._records import ApiKey
from ._sql import Database, OnDatabase, Row, Session, from_micros, to_micros

_DDL = (
    ("api_keys", """CREATE TABLE IF NOT EXISTS api_keys (
        key_id TEXT PRIMARY KEY, key_sha256 TEXT NOT NULL UNIQUE, tenant TEXT,
        created_at_us BIGINT NOT NULL, created_by TEXT NOT NULL, revoked_at_us BIGINT,
        revoked_by TEXT, label TEXT NOT NULL)"""),
)
_COLUMNS = "key_id, tenant, created_at_us, created_by, revoked_at_us, label"
PREFIX = "fo_"
#: Attempts to draw a key whose ``key_id`` is not taken (a clash has odds of 1 in 2**48).
_DRAWS = 5


class ApiKeys(OnDatabase):
    """The API keys of the serving layer; ``tenant`` None is an admin key.

    Examples
    --------
    >>> import tempfile
    >>> with ApiKeys.open(f"sqlite:///{tempfile.mkdtemp()}/keys.db") as keys:
    ...     key, record = keys.create("acme", created_by="ana")
    ...     keys.authenticate(key).tenant, keys.authenticate(key + "x")
    ...     keys.revoke(record.key_id, actor="ana").revoked_at is not None
    ...     keys.authenticate(key)
    ('acme', None)
    True
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def open(cls, url: str) -> ApiKeys:
        """Connect to the key store at ``url`` (``sqlite:///<path>`` or ``postgresql://...``,
        as :meth:`DecisionLog.open`) and create its table if missing."""
        return cls(Database.open(url, ddl=_DDL, what="API key store"))

    def create(self, tenant: str | None, *, created_by: str, label: str = "") -> tuple[str, ApiKey]:
        """A new key for ``tenant`` (None: admin); the plaintext is returned here and never again."""
        if not isinstance(created_by, str) or not created_by.strip():
            raise InputError(f"an API key needs 'created_by' (who created it); got {created_by!r}")
        now = datetime.now(UTC)
        for _ in range(_DRAWS):
            key = PREFIX + secrets.token_urlsafe(24)
            record = ApiKey(key[len(PREFIX):len(PREFIX) + 8], tenant, now, created_by, None, label)
            row = (record.key_id, tenant, to_micros(now, "created_at"), created_by, None, label,
                   _sha256(key))
            if self._insert(row):
                return key, record
        raise StoreError(f"API key store at {self.db.target.where}: {_DRAWS} random key ids in a row"
                         " were taken; the random source is broken")

    def _insert(self, row: tuple[object, ...]) -> bool:
        """Store a new key's row; False if its ``key_id`` is taken."""
        sql = (f"INSERT INTO api_keys ({_COLUMNS}, key_sha256) VALUES (?, ?, ?, ?, ?, ?, ?)"
               " ON CONFLICT DO NOTHING")
        return bool(self.db.run("create an API key",
                                lambda session: session.execute(sql, row).rowcount == 1, write=True))

    def authenticate(self, key: str) -> ApiKey | None:
        """The record of a valid key; None for an unknown, malformed or revoked one.

        Any string is hashed and looked up as is (no early return on its shape), so the time
        taken says nothing about how close a guess was.
        """
        digest = _sha256(key)
        row = self.db.run("authenticate an API key", lambda session: session.one(
            f"SELECT {_COLUMNS} FROM api_keys WHERE key_sha256 = ? AND revoked_at_us IS NULL",
            (digest,)))
        return None if row is None else _api_key(row)

    def revoke(self, key_id: str, *, actor: str) -> ApiKey:
        """Refuse the key from now on; revoking twice keeps the first revocation."""
        if not isinstance(actor, str) or not actor.strip():
            raise InputError(f"revoking a key needs an 'actor' (who revoked it); got {actor!r}")
        now = to_micros(datetime.now(UTC), "revoked_at")

        def revoke(session: Session) -> Row | None:
            session.execute("UPDATE api_keys SET revoked_at_us = ?, revoked_by = ?"
                            " WHERE key_id = ? AND revoked_at_us IS NULL", (now, actor, key_id))
            return session.one(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,))

        row = self.db.run(f"revoke API key {key_id!r}", revoke, write=True)
        if row is None:
            raise InputError(f"API key id {key_id!r} is unknown; see the ids with ApiKeys.list()")
        return _api_key(row)

    def list(self, tenant: str | None = None) -> builtins.list[ApiKey]:
        """Every key's record (revoked ones too), oldest first; of one tenant when given."""
        where, params = ("WHERE tenant = ? ", (tenant,)) if tenant is not None else ("", ())
        rows = self.db.run("list API keys", lambda session: session.all(
            f"SELECT {_COLUMNS} FROM api_keys {where}ORDER BY created_at_us, key_id", params))
        return [_api_key(row) for row in rows]


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _api_key(row: Row) -> ApiKey:
    return ApiKey(key_id=row[0], tenant=row[1], created_at=from_micros(row[2]), created_by=row[3],
                  revoked_at=None if row[4] is None else from_micros(row[4]), label=row[5])
