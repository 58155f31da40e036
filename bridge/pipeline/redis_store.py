"""Redis dedup store: replicas share the dedup window, and a restart keeps it.

Each delivered (source, id) becomes a key ``<prefix><blake2b(source, id)>`` with the window as its TTL
(``SET .. EX .. NX``). ``seen`` is one pipelined EXISTS round trip per batch, ``record`` one pipelined
SET round trip. The count bound of the window is left to Redis itself (``maxmemory`` with a
``volatile-ttl``/``volatile-lru`` policy); the time bound is the TTL. Connects and reads time out after
``timeout`` seconds (``dedup.store_timeout_seconds``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import redis.asyncio as aioredis

from bridge.pipeline.dedup import DedupKey


def redis_key(prefix: str, key: DedupKey) -> str:
    digest = hashlib.blake2b(f"{key[0]}\x00{key[1]}".encode(), digest_size=16).hexdigest()
    return prefix + digest


class RedisDedupStore:
    """Dedup store in Redis, shared by every replica pointing at the same server and prefix."""

    def __init__(
        self, url: str, window_seconds: float = 600.0, prefix: str = "bridge:dedup:", timeout: float = 2.0
    ) -> None:
        # socket timeouts bound every connect/read; the Deduplicator bounds each whole call on top of them
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.ttl = max(1, int(window_seconds))
        self.prefix = prefix

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def seen(self, keys: Sequence[DedupKey]) -> list[bool]:
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.exists(redis_key(self.prefix, k))
        results = await pipe.execute()
        return [bool(r) for r in results]

    async def record(self, keys: Sequence[DedupKey]) -> None:
        if not keys:
            return
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.set(redis_key(self.prefix, k), b"1", ex=self.ttl, nx=True)
        await pipe.execute()

    async def close(self) -> None:
        await self.client.aclose()
