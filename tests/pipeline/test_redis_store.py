"""Redis dedup store against the real Redis server: shared window, TTL, survives a new client."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bridge.pipeline.dedup import FRESH, NOT_CHECKED, SEEN, Deduplicator
from bridge.pipeline.redis_store import RedisDedupStore, redis_key
from testbed.servers import RedisServer
from testbed.waiting import wait_for


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


@pytest.mark.broker
async def test_readiness_knows_the_store_only_once_a_ping_with_its_credentials_answered(tmp_path: Path) -> None:
    """A Redis store is 'not contacted yet' before its first answer (never ok by default); the start check PINGs it
    with its credentials: a wrong password gives the authentication error, the right one clears it."""
    redis = RedisServer(password="right", log_dir=tmp_path).start()
    try:
        wrong = Deduplicator(RedisDedupStore(redis.url(password="wrong"), timeout=1), timeout=1,
                             on_store_error="pass")
        assert wrong.store_error == NOT_CHECKED
        checking = asyncio.ensure_future(wrong.check())
        await wait_for(lambda: wrong.store_error != NOT_CHECKED, within=10, every=0.05, what="the first PING")
        checking.cancel()
        assert wrong.store_error is not None and ("WRONGPASS" in wrong.store_error or "Authentication" in
                                                  wrong.store_error), wrong.store_error
        right = Deduplicator(RedisDedupStore(redis.url(password="right"), timeout=1), timeout=1)
        await asyncio.wait_for(right.check(), 10)
        assert right.store_error is None
        await wrong.store.close()
        await right.store.close()
    finally:
        redis.stop()
