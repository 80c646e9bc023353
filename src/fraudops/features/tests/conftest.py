"""Fixtures of the feature engine's tests."""

from ._redis import redis_prefix  # noqa: F401 (a fixture, shared with the serving tests)
