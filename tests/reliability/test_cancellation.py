"""asyncio cancellation: tasks cancelled at random points of their calls, including in the middle
of a heal.  Each round has two parts: many tasks of every kind, a random share of them
cancelled, while another client flushes the script cache every millisecond; then single calls
made right after a flush (so each heals), each cancelled at a random point of its duration.

Asserted: every call that completed got its own reply (each reply is made from the call's own
key and arguments, and plain commands and pipelines run alongside; a pipelined call may instead
be reported ``LuaNotLoadedError`` when a flush lands between its load and its run); nothing
but a cancellation or a result came out; afterwards no connection is left in use, the pool
holds no more connections than its limit, and a batch of calls on the same client all succeed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import redis
import redis.asyncio

import luaimport

from ._support import record, server_name, size

ROUNDS = size(ci=30, full=300)
TASKS = size(ci=40, full=100)  # tasks per round
POOL = 8  # connections at most (a blocking pool: a leaked connection would stall later calls)
CANCEL_SHARE = 0.6  # of the tasks, cancelled after a random delay
CANCEL_WITHIN = 0.004  # seconds: a call, or a heal, takes about that on loopback
HEALS = size(ci=10, full=40)  # single healing calls per round, each cancelled somewhere in it

ECHO = """\
--@function echo
-- Reply with values made from the call's own key and arguments.
--@keys key
--@args token number
return {KEYS[1], ARGV[1], tostring(tonumber(ARGV[2]) * 2)}
"""


def test_cancelled_calls_leave_every_reply_with_its_own_call(server_kwargs: dict[str, Any]) -> None:
    echo = luaimport.loads(ECHO, "reliability.cancel").echo
    admin = redis.Redis(**server_kwargs)
    rng = random.Random(12)
    tally: dict[str, float] = dict.fromkeys(
        ["calls", "cancelled", "cancelled_in_heal", "completed", "flushes"], 0
    )
    wrong: list[tuple[str, object]] = []
    others: list[BaseException] = []

    def expect(token: str, n: int) -> list[bytes]:
        return [f"c:{token}".encode(), token.encode(), str(n * 2).encode()]

    async def one(aclient: redis.asyncio.Redis, kind: int, token: str, n: int) -> None:
        """One task: a luaimport call, a plain command, or a pipeline of both; checks its replies."""
        if kind == 0:
            reply: Any = await echo(aclient, key=f"c:{token}", token=token, number=n)
            wanted: Any = expect(token, n)
        elif kind == 1:
            reply, wanted = await aclient.echo(token), token.encode()
        else:
            async with aclient.pipeline(transaction=kind == 3) as pipe:
                echo(pipe, key=f"c:{token}", token=token, number=n)
                pipe.echo(token)
                echo(pipe, key=f"c:{token}", token=token, number=n + 1)
                reply = await pipe.execute(raise_on_error=False)
            wanted = [expect(token, n), token.encode(), expect(token, n + 1)]
            # a flush between a script's load in the pipeline and its call: those calls did not run
            reply = [
                w if isinstance(r, luaimport.LuaNotLoadedError) else r
                for r, w in zip(reply, wanted, strict=True)
            ]
        if reply != wanted:
            wrong.append((token, reply))

    async def guarded(aclient: redis.asyncio.Redis, kind: int, token: str, n: int) -> None:
        try:
            await one(aclient, kind, token, n)
        except asyncio.CancelledError as exc:
            tally["cancelled"] += 1
            tally["cancelled_in_heal"] += any("by its text" in note for note in getattr(exc, "__notes__", ()))
            raise
        tally["completed"] += 1

    async def flush(flusher: redis.asyncio.Redis, done: asyncio.Event) -> None:
        for _ in range(100_000):
            if done.is_set():
                return
            await flusher.script_flush()
            tally["flushes"] += 1
            await asyncio.sleep(0.001)

    async def heal_time(aclient: redis.asyncio.Redis, flusher: redis.asyncio.Redis) -> float:
        """How long a call that heals takes here: the median of a few, uncancelled."""
        times = []
        for k in range(15):
            await flusher.script_flush()
            began = loop_time()
            await one(aclient, 0, f"measure.{k}", k)
            times.append(loop_time() - began)
        return sorted(times)[len(times) // 2]

    def loop_time() -> float:
        return asyncio.get_running_loop().time()

    async def rounds() -> dict[str, int]:
        pool = redis.asyncio.BlockingConnectionPool(
            max_connections=POOL, timeout=10, **_pool_kwargs(server_kwargs)
        )
        aclient = redis.asyncio.Redis(connection_pool=pool)
        flusher = redis.asyncio.Redis(**server_kwargs)  # another client, outside the pool under test
        loop = asyncio.get_running_loop()
        try:
            healing = await heal_time(aclient, flusher)
            tally["heal_ms"] = round(healing * 1000, 2)
            for r in range(ROUNDS):
                done = asyncio.Event()
                flushing = asyncio.create_task(flush(flusher, done))
                tasks = []
                for k in range(TASKS):
                    task = asyncio.create_task(guarded(aclient, k % 4, f"{r}.{k}", k))
                    if rng.random() < CANCEL_SHARE:
                        loop.call_later(rng.uniform(0, CANCEL_WITHIN), task.cancel)
                    tasks.append(task)
                for result in await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60):
                    if result is not None and not isinstance(result, asyncio.CancelledError):
                        others.append(result)
                done.set()
                await asyncio.wait_for(flushing, 10)
                tally["calls"] += TASKS
                for h in range(HEALS):  # one call at a time, right after a flush: it heals
                    await flusher.script_flush()
                    task = asyncio.create_task(guarded(aclient, 0, f"{r}.heal.{h}", h))
                    loop.call_later(rng.uniform(0, healing * 1.2), task.cancel)
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait_for(task, 60)
                tally["calls"] += HEALS
            in_use = len(pool._in_use_connections)
            # afterwards, a batch on the same client: every call succeeds with its own reply
            await asyncio.wait_for(
                asyncio.gather(*(one(aclient, k % 4, f"after.{k}", k) for k in range(4 * POOL * 4))), 60
            )
            return {
                "in_use_after": in_use,
                "connections": len(pool._available_connections) + len(pool._in_use_connections),
            }
        finally:
            await aclient.aclose()
            await pool.disconnect()
            await flusher.aclose()

    pool_state = asyncio.run(rounds())
    record(
        "asyncio cancellation",
        server_name(admin),
        rounds=ROUNDS,
        **tally,
        **pool_state,
        pool_limit=POOL,
    )
    admin.close()
    assert others == [], f"errors other than cancellation: {others[:5]}"
    assert wrong == [], f"replies that are not their own call's: {wrong[:5]}"
    assert pool_state["in_use_after"] == 0
    assert pool_state["connections"] <= POOL
    assert tally["cancelled"] > 0 and tally["completed"] > 0
    assert tally["cancelled_in_heal"] > 0  # the luaimport heal itself was interrupted, and recovered from


def _pool_kwargs(server_kwargs: dict[str, Any]) -> dict[str, Any]:
    """A pool's own arguments for the test server (a unix socket needs its connection class)."""
    if "unix_socket_path" in server_kwargs:
        path = server_kwargs["unix_socket_path"]
        return {"connection_class": redis.asyncio.UnixDomainSocketConnection, "path": path}
    return dict(server_kwargs)
