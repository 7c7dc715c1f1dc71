"""``python -m demo_pkg`` runs its scenario, embedded and against a given server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXPECTED = [
    "bind: loaded 10 linked scripts in one round trip",
    "counters.incr_many([a, b, hits], [2])        -> [2, 2, 44]",
    "incr([hits], [10]), incr(.., [lots]), get    -> [54, 'LuaError at line 13', [54]]",
    "ratelimit.allow x6                           -> [1, 1, 1, 1, 1, 0]",
    "queue.push(3 payloads)                       -> ids [1, 2, 3]",
    "queue.claim(lease 30 s)                      -> #2 email:bob",
    "slide x4, allowed flags                      -> [1, 1, 1, 0]",
    "LuaError: demo_pkg/counters.lua:13 in demo_pkg.counters.<prelude>: amount must be an integer, got lots",
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
    for line in EXPECTED:
        assert line in out


def test_demo_against_redis_url_twice_prints_the_same(server_kwargs: dict[str, object]) -> None:
    if "unix_socket_path" in server_kwargs:
        url = f"unix://{server_kwargs['unix_socket_path']}"
    else:
        url = f"redis://{server_kwargs['host']}:{server_kwargs['port']}/0"
    env = {**os.environ, "REDIS_URL": url}
    first, second = run_demo(env), run_demo(env)
    assert first == second
    for line in EXPECTED:
        assert line in first


@pytest.fixture(autouse=True)
def _demo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(os.path.dirname(os.path.dirname(__file__)))
