"""``python -m demo_pkg`` runs its scenario, embedded and against a given server, on both backends.

The cluster test runs demo_pkg's functions through FCALL on a real cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis
from _cluster import Cluster
from _servers import flags_supported, has_functions
from redis.cluster import RedisCluster

import luaimport

EXPECTED = [
    "counters.incr(counter=hits, by=41)           -> 42",
    "counters.incr_many([a, b, hits], [2])        -> [2, 2, 44]",
    "counters.incr(countr=hits)                   -> LuaArgumentError: demo_pkg.counters.incr() missing key "
    "'counter'; got unexpected keyword argument 'countr' (did you mean 'counter'?)",
    "incr([hits], [10]), incr(.., [lots]), get    -> [54, 'LuaError at line 13', [54]]",
    "ratelimit.allow x6                           -> [1, 1, 1, 1, 1, 0]",
    "queue.push(3 payloads)                       -> ids [1, 2, 3]",
    "queue.claim(lease 30 s)                      -> #2 email:bob",
    "slide x4, allowed flags                      -> [1, 1, 1, 0]",
    "LuaError: demo_pkg/counters.lua:13 in demo_pkg.counters.<prelude>: amount must be an integer, got lots",
]


#: what depends on script flags, which Redis 6.2 lacks
WITH_FLAGS = [
    "bind: loaded 10 linked scripts in one round trip",
    "ratelimit.remaining (read-only: EVALSHA_RO)  -> 0",
]
WITHOUT_FLAGS = [
    "bind: loaded 9 linked scripts in one round trip",
    "ratelimit.remaining (read-only)              -> not run: this server has no script flags",
]


#: what the Functions backend prints instead
FUNCTIONS = [
    "bind: deployed 4 libraries (10 functions) in one round trip:",
    "pipeline (FCALLs of the deployed functions; errors stay in their place):",
    "ratelimit.remaining (read-only: FCALL_RO)    -> 0",
]


def run_demo(env: dict[str, str], *options: str, returncode: int = 0) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "demo_pkg", *options],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == returncode, done.stderr
    return done.stdout


def test_demo_on_an_embedded_valkey() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LUAIMPORT_BACKEND")}
    out = run_demo(env)
    assert "(embedded Valkey on a Unix socket)" in out
    for line in EXPECTED + WITH_FLAGS:
        assert line in out


def test_demo_against_redis_url_twice_prints_the_same(client: redis.Redis, server_url: str) -> None:
    env = {**os.environ, "REDIS_URL": server_url}
    first, second = run_demo(env), run_demo(env)
    assert first == second
    for line in EXPECTED + (WITH_FLAGS if flags_supported(client) else WITHOUT_FLAGS):
        assert line in first


def test_demo_on_the_functions_backend_on_an_embedded_valkey() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LUAIMPORT_BACKEND")}
    out = run_demo(env, "--backend", "functions")
    for line in EXPECTED + FUNCTIONS:
        assert line in out
    assert "EVALSHA" not in out


def test_demo_on_the_functions_backend_against_the_server_under_test(
    client: redis.Redis, server_url: str
) -> None:
    env = {**os.environ, "REDIS_URL": server_url, "LUAIMPORT_BACKEND": "functions"}
    if not has_functions(client):  # Redis 6.2: the clear error, and nothing run
        out = run_demo(env, returncode=1)
        assert "bind: the Functions backend needs Redis 7+ or Valkey 7.2+" in out
        assert "counters.incr" not in out
        return
    client.function_flush()
    client.config_resetstat()
    first, second = run_demo(env), run_demo(env)
    assert first == second
    for line in EXPECTED + FUNCTIONS:
        assert line in first
    stats = client.info("commandstats")
    assert "cmdstat_evalsha" not in stats and "cmdstat_evalsha_ro" not in stats
    assert stats["cmdstat_fcall"]["calls"] > 20
    assert stats["cmdstat_function|load"]["calls"] == 8  # four libraries, deployed by each run


def test_demo_pkg_runs_through_fcall_on_a_cluster(import_state: object, cluster: Cluster) -> None:
    if not has_functions(cluster.primaries[0].client):
        pytest.skip("Redis 6.2 has no Functions")
    from demo_pkg import counters, queue, ratelimit, slide

    rc = RedisCluster(host="127.0.0.1", port=cluster.port)
    try:
        deployed = luaimport.bind(rc, counters, queue, ratelimit, slide, backend="functions")
        assert len(deployed) == 10
        key = "demo:{demo}:".__add__
        assert counters.incr(rc, counter=key("hits"), by=41) == 41
        assert counters.incr_many(rc, [key("a"), key("hits")], [1]) == [1, 42]
        jobs = [key("pending"), key("processing"), key("leases")]
        assert queue.push(rc, pending=jobs[0], ids=key("ids"), payloads=["x", "y"]) == [1, 2]
        assert queue.claim(rc, jobs, [30_000]) == b'{"id":1,"body":"x"}'
        assert [ratelimit.allow(rc, bucket=key("bucket"), capacity=2, rate=1) for _ in range(3)] == [1, 1, 0]
        assert ratelimit.remaining(rc, bucket=key("bucket"), capacity=2, rate=1) == 0
        assert [slide(rc, log=key("log"), window_ms=1000, limit=1)[0] for _ in range(2)] == [1, 0]
        pipe = rc.pipeline()
        counters.incr(pipe, [key("hits")], [10])
        counters.get(pipe, [key("hits"), key("a")])
        assert pipe.execute() == [52, [52, 1]]
        node = rc.get_node_from_key(key("hits"))
        owner = next(n for n in cluster.primaries if n.port == node.port)
        stats = owner.client.info("commandstats")
    finally:
        rc.close()
    assert stats["cmdstat_fcall"]["calls"] == 11
    assert stats["cmdstat_fcall_ro"]["calls"] == 1
    assert "cmdstat_evalsha" not in stats and "cmdstat_eval" not in stats


@pytest.fixture(autouse=True)
def _demo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
