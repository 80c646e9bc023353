"""API keys authenticate until revoked, and the database never holds one in the clear.

PostgreSQL tests use the server at 127.0.0.1:5432 (database ``test``) with a schema of their
own, dropped afterwards; they are skipped (with the reason) only when it is unreachable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fraudops.core import InputError
from fraudops.serving import ApiKeys

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/keys.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def keys(url: str) -> Iterator[ApiKeys]:
    with ApiKeys.open(url) as opened:
        yield opened


def test_created_key_authenticates_as_its_tenant(keys: ApiKeys) -> None:
    key, record = keys.create("acme", created_by="ana", label="checkout")
    assert re.fullmatch(r"fo_[A-Za-z0-9_-]{32}", key)
    assert record.key_id == key[3:11]
    assert (record.tenant, record.created_by, record.label, record.revoked_at) == (
        "acme", "ana", "checkout", None)
    assert keys.authenticate(key) == record


def test_admin_key_has_no_tenant(keys: ApiKeys) -> None:
    key, _ = keys.create(None, created_by="ana")
    found = keys.authenticate(key)
    assert found is not None
    assert found.tenant is None


@pytest.mark.parametrize("guess", ["", "fo_", "not a key", "fo_" + "A" * 32, "ключ\udcff"])
def test_unknown_or_malformed_key_is_refused(keys: ApiKeys, guess: str) -> None:
    key, _ = keys.create("acme", created_by="ana")
    assert keys.authenticate(guess) is None
    assert keys.authenticate(key[:-1]) is None


def test_revoked_key_is_refused(keys: ApiKeys) -> None:
    key, record = keys.create("acme", created_by="ana")
    other, _ = keys.create("acme", created_by="ana")
    revoked = keys.revoke(record.key_id, actor="bob")
    assert revoked.revoked_at is not None
    assert revoked.key_id == record.key_id
    assert keys.authenticate(key) is None
    assert keys.authenticate(other) is not None


def test_revoking_twice_keeps_the_first_revocation(keys: ApiKeys) -> None:
    _, record = keys.create("acme", created_by="ana")
    first = keys.revoke(record.key_id, actor="bob")
    assert keys.revoke(record.key_id, actor="eve") == first


def test_revoking_an_unknown_key_names_it(keys: ApiKeys) -> None:
    with pytest.raises(InputError, match="API key id 'nokey123' is unknown"):
        keys.revoke("nokey123", actor="bob")


def test_list_shows_every_key_or_one_tenants(keys: ApiKeys) -> None:
    records = [keys.create(tenant, created_by="ana")[1] for tenant in ("acme", None, "globex", "acme")]
    keys.revoke(records[0].key_id, actor="bob")
    listed = keys.list()
    assert {k.key_id for k in listed} == {r.key_id for r in records}
    assert [k.key_id for k in keys.list("acme")] == [k.key_id for k in listed if k.tenant == "acme"]
    assert {k.key_id for k in keys.list("acme")} == {records[0].key_id, records[3].key_id}
    assert [k.revoked_at is not None for k in keys.list("acme")].count(True) == 1


def test_keys_are_distinct(keys: ApiKeys) -> None:
    created = [keys.create("acme", created_by="ana") for _ in range(50)]
    assert len({key for key, _ in created}) == len({r.key_id for _, r in created}) == 50


def test_creating_without_creator_is_refused(keys: ApiKeys) -> None:
    with pytest.raises(InputError, match="needs 'created_by'"):
        keys.create("acme", created_by="")


def test_sqlite_file_holds_only_the_hash(tmp_path: Path) -> None:
    """Grep the database and its WAL: the plaintext is absent, its SHA-256 present."""
    with ApiKeys.open(f"sqlite:///{tmp_path}/keys.db") as keys:
        key, _ = keys.create("acme", created_by="ana")
        stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("keys.db"))
    assert key.encode() not in stored
    assert key[3:].encode() not in stored
    assert hashlib.sha256(key.encode()).hexdigest().encode() in stored


def test_postgresql_rows_hold_only_the_hash(postgres_url: str) -> None:
    with ApiKeys.open(postgres_url) as keys:
        key, _ = keys.create("acme", created_by="ana")
    schema = postgres_url.rpartition("schema=")[2]
    with psycopg.connect(POSTGRES) as raw:
        rows = raw.execute(f'SELECT row_to_json(k)::text FROM "{schema}".api_keys k').fetchall()
    text = " ".join(row[0] for row in rows)
    assert key[3:] not in text
    assert hashlib.sha256(key.encode()).hexdigest() in text
