"""Redis dedup store against the real Redis server: shared window, TTL, survives a new client."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from bridge.pipeline.dedup import FRESH, SEEN, Deduplicator
from bridge.pipeline.redis_store import RedisDedupStore, redis_key


async def test_recorded_ids_are_seen_by_another_replica(redis_url: str) -> None:
    """An id recorded through one store instance is a duplicate for a second instance (another replica)."""
    prefix = f"test:{uuid.uuid4().hex}:"
    a = RedisDedupStore(redis_url, 60, prefix)
    b = RedisDedupStore(redis_url, 60, prefix)
    try:
        await a.record([("src", "1"), ("src", "2")])
        assert await b.seen([("src", "1"), ("src", "3"), ("other", "1")]) == [True, False, False]
        dedup = Deduplicator(b)
        assert await dedup.split([("src", "2"), ("src", "4")]) == [SEEN, FRESH]
    finally:
        await a.close()
        await b.close()


async def test_keys_carry_the_window_as_ttl(redis_url: str) -> None:
    """Each remembered id expires after window_seconds (time bound of the window)."""
    prefix = f"test:{uuid.uuid4().hex}:"
    store = RedisDedupStore(redis_url, 42, prefix)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await store.record([("src", "x")])
        ttl = await client.ttl(redis_key(prefix, ("src", "x")))
        assert 40 <= ttl <= 42
    finally:
        await store.close()
        await client.aclose()
