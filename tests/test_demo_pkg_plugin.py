"""demo_pkg's own tests (demo_pkg/tests/), which use luaimport's pytest plugin, pass in their own session.

They are a test tree of their own, as a user's would be, so they run in a
separate pytest process: on the plugin's embedded Valkey, and against this
suite's server through ``--luaimport-url`` (so on every server of the matrix).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import redis
from _servers import flags_supported

DEMO_TESTS = Path(__file__).parent.parent / "demo_pkg" / "tests"


def demo_session(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(DEMO_TESTS), "-q", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=DEMO_TESTS.parent.parent,
        timeout=120,
        check=False,
    )


def run_demo_tests(*args: str) -> str:
    done = demo_session(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed in [\d.]+s", summary), summary  # nothing skipped, nothing else
    return summary


def test_demo_pkg_tests_pass_on_the_plugins_embedded_valkey() -> None:
    run_demo_tests()


def test_demo_pkg_tests_pass_against_a_given_server(client: redis.Redis, server_url: str) -> None:
    if flags_supported(client):
        run_demo_tests("--luaimport-url", server_url)
    else:  # binding demo_pkg meets ratelimit.remaining's --@readonly: the clear error, at its line
        done = demo_session("--luaimport-url", server_url)
        assert done.returncode == 1, done.stdout + done.stderr
        clear = "ratelimit.lua:56 in demo_pkg.ratelimit.remaining: the function declares script flags"
        assert clear in done.stdout
    assert client.dbsize() == 0  # each of those tests ended with FLUSHALL
