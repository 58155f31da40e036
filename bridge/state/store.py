"""Where the last states live: per key, the sequence and the state value last recorded.

A key is (scope, source, subject): the scope is a ``changes_only`` route's name (its last *published* state),
``@state`` for the state topic (its last published sequence; source left empty, as the topic is keyed by
subject alone) or ``@redrive`` for the dead letters a redrive has handled. ``put`` keeps, per key, the entry
with the higher sequence (string order), so a late writer never moves a key backwards, also between replicas:
in Redis the comparison and the write are one server-side script.

- ``MemoryStateStore``: per process, at most ``max_entries`` keys (least recently written forgotten first),
  each for ``ttl`` seconds.
- ``RedisStateStore``: keys ``<prefix><blake2b(scope, source, subject)>`` with the TTL; one ``MGET`` per
  lookup and one script call per ``put``, whatever the number of keys. It may share the dedup store's client.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

StateKey = tuple[str, str, str]
Entry = tuple[str, bytes]
"""(sequence, state value)."""
Write = tuple[StateKey, str, bytes]


class StateStore(Protocol):
    async def get(self, keys: Sequence[StateKey]) -> list[Entry | None]:
        """The entry of each key, or None when there is none (never written, expired, forgotten)."""
        ...

    async def put(self, writes: Sequence[Write]) -> None:
        """Record (key, sequence, value) unless the key holds a higher sequence already."""
        ...

    async def close(self) -> None: ...


class MemoryStateStore:
    """Last states in this process (see the module docstring)."""

    def __init__(self, ttl: float = 7 * 86400.0, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[int, tuple[str, bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def get_now(self, keys: Sequence[StateKey]) -> list[Entry | None]:
        entries = self._entries
        now = self._clock()
        out: list[Entry | None] = []
        for key in keys:
            found = entries.get(hash(key))
            out.append((found[0], found[1]) if found is not None and found[2] > now else None)
        return out

    def put_now(self, writes: Sequence[Write]) -> None:
        entries = self._entries
        now = self._clock()
        expires = now + self.ttl
        for key, seq, value in writes:
            h = hash(key)
            found = entries.get(h)
            if found is not None and found[2] > now and found[0] > seq:
                continue
            entries[h] = (seq, value, expires)
            entries.move_to_end(h)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    async def get(self, keys: Sequence[StateKey]) -> list[Entry | None]:
        return self.get_now(keys)

    async def put(self, writes: Sequence[Write]) -> None:
        self.put_now(writes)

    async def close(self) -> None:
        return None


# KEYS: the keys; ARGV[1]: TTL in seconds, then (sequence, stored value) per key. Byte-wise comparison of the
# sequences (Lua's < follows the server's collation locale, so it is not used).
_PUT_IF_NEWER: Final = """
local ttl = tonumber(ARGV[1])
local function older(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
for i, key in ipairs(KEYS) do
  local seq, stored = ARGV[2 * i], ARGV[2 * i + 1]
  local cur = redis.call('GET', key)
  local write = true
  if cur then
    local len = tonumber(string.match(cur, '^(%d+):'))
    if len then
      local start = #tostring(len) + 2
      write = not older(seq, string.sub(cur, start, start + len - 1))
    end
  end
  if write then redis.call('SET', key, stored, 'EX', ttl) end
end
return 0
"""


def _pack(seq: str, value: bytes) -> bytes:
    raw = seq.encode()
    return str(len(raw)).encode() + b":" + raw + value


def _unpack(stored: bytes) -> Entry | None:
    head, sep, rest = stored.partition(b":")
    if not sep or not head.isdigit():
        return None
    n = int(head)
    return rest[:n].decode(errors="replace"), rest[n:]


class RedisStateStore:
    """Last states in Redis, shared by the replicas (see the module docstring)."""

    def __init__(self, client: Any, prefix: str = "bridge:state:", ttl: float = 7 * 86400.0,
                 owns_client: bool = False) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = max(1, int(ttl))
        self._owns = owns_client
        self._script = client.register_script(_PUT_IF_NEWER)

    @classmethod
    def from_url(cls, url: str, prefix: str, ttl: float, timeout: float) -> RedisStateStore:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, prefix, ttl, owns_client=True)

    def redis_key(self, key: StateKey) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(key[0].encode())
        h.update(b"\x00")
        h.update(key[1].encode())
        h.update(b"\x00")
        h.update(key[2].encode())
        return self.prefix + h.hexdigest()

    async def get(self, keys: Sequence[StateKey]) -> list[Entry | None]:
        if not keys:
            return []
        values = await self.client.mget([self.redis_key(k) for k in keys])
        return [_unpack(v) if v is not None else None for v in values]

    async def put(self, writes: Sequence[Write]) -> None:
        if not writes:
            return
        args: list[Any] = [self.ttl]
        for _, seq, value in writes:
            args.append(seq.encode())
            args.append(_pack(seq, value))
        await self._script(keys=[self.redis_key(k) for k, _, _ in writes], args=args)

    async def close(self) -> None:
        if self._owns:
            await self.client.aclose()
