"""The test Redis (127.0.0.1:6379): whether it answers, and a key prefix per test.

Shared by the tests of every layer that uses Redis (import ``redis_prefix`` to use the fixture).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from fraudops.features import RedisStore

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_down() -> str | None:
    """None when the test Redis answers, else why not."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.3).ping()
    except redis.exceptions.RedisError as exc:
        return f"Redis is unreachable at {REDIS_URL}: {exc}"
    return None


REDIS_DOWN = redis_down()
needs_redis = pytest.mark.skipif(REDIS_DOWN is not None, reason=REDIS_DOWN or "")


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    prefix = f"fraudops-test:{uuid.uuid4().hex}:"
    yield prefix
    if REDIS_DOWN is None:
        with RedisStore(REDIS_URL, prefix=prefix) as store:
            store.clear()
