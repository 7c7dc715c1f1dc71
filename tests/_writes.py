"""The round trips clients make, counted on the client side, for tests and benchmarks.

Every write a redis-py or valkey-py client makes, sync or asyncio, goes
through its connection's ``send_packed_command``: a single command and a
whole pipeline alike, so a pipeline is one write.  Wrapping that method counts
round trips without a proxy and without touching what is sent.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import redis.asyncio.connection
import redis.connection
import valkey.asyncio.connection
import valkey.connection

CONNECTIONS = [
    redis.connection.Connection,
    redis.asyncio.connection.Connection,
    valkey.connection.Connection,
    valkey.asyncio.connection.Connection,
]


@contextlib.contextmanager
def counted_writes() -> Iterator[collections.Counter[int]]:
    """Count each write clients make while inside, by the port of the server written to."""
    counts: collections.Counter[int] = collections.Counter()
    #: the class each connection class inherits send_packed_command from
    owners: list[Any] = [next(c for c in k.__mro__ if "send_packed_command" in vars(c)) for k in CONNECTIONS]
    originals = [vars(owner)["send_packed_command"] for owner in owners]
    for owner, send in zip(owners, originals, strict=True):
        owner.send_packed_command = _counting(send, counts)
    try:
        yield counts
    finally:
        for owner, send in zip(owners, originals, strict=True):
            owner.send_packed_command = send


def _counting(send: Callable[..., Any], counts: collections.Counter[int]) -> Callable[..., Any]:
    """``send``, counting each call in ``counts`` under the port of its connection."""
    if inspect.iscoroutinefunction(send):

        async def counted_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[self.port] += 1
            return await send(self, *args, **kwargs)

        return counted_async

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts[self.port] += 1
        return send(self, *args, **kwargs)

    return counted
