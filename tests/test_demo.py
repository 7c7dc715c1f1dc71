"""``python -m demo_pkg`` runs its scenario, embedded and against a given server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis
from _servers import flags_supported

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


def run_demo(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "demo_pkg"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_demo_on_an_embedded_valkey() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
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


@pytest.fixture(autouse=True)
def _demo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
