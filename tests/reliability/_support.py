"""What the reliability scenarios share: their size, the counting script, the ledger that
accounts for every call, the figures they report, and server processes a test may kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import redis
from _cluster import _free_port

import luaimport

FULL = os.environ.get("LUAIMPORT_RELIABILITY") == "full"


def size(ci: int, full: int) -> int:
    """The CI size, or the full one under ``LUAIMPORT_RELIABILITY=full``."""
    return full if FULL else ci


COUNTING = """\
-- Counting scripts: every call leaves a trace of its own.

--@function bump
-- Add 1 to KEYS[1]; return the new value.
return redis.call('INCR', KEYS[1])

--@function count
-- Count one call: 1 more on the counter, and 1 more on the call's own field of the
-- runs hash, so a call that ran twice shows as a 2 there. Replies with the call's id.
--@keys counter runs
--@args id
local n = CALL.bump({KEYS[1]}, {})
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return {ARGV[1], n}
"""


def counting() -> luaimport.LuaModule:
    """The counting module: ``count(client, [counter, runs], [call id])`` replies ``[call id, count]``."""
    return luaimport.loads(COUNTING, "reliability.counting", "reliability/counting.lua")


def no_retry() -> Any:
    """A redis-py ``Retry`` that never resends: whatever runs twice can then only be luaimport's doing."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def server_name(client: redis.Redis) -> str:
    info = client.info("server")
    if "valkey_version" in info:
        return f"Valkey {info['valkey_version']}"
    return f"Redis {info['redis_version']}"


def command_calls(client: redis.Redis, name: str) -> int:
    """Calls of a command (and its subcommands) since the last CONFIG RESETSTAT."""
    stats = client.info("commandstats")
    own = f"cmdstat_{name}"
    return sum(int(v["calls"]) for k, v in stats.items() if k == own or k.startswith(f"{own}|"))


def record(scenario: str, server: str, **figures: Any) -> None:
    """Report a scenario's figures: printed, and appended to ``$LUAIMPORT_RELIABILITY_REPORT``."""
    line = {"scenario": scenario, "server": server, "size": "full" if FULL else "ci", **figures}
    print(json.dumps(line))
    path = os.environ.get("LUAIMPORT_RELIABILITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as report:
            report.write(json.dumps(line) + "\n")


def error_kind(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:80]}"


class Ledger:
    """Every call of a scenario by its id: acknowledged (its reply checked), or failed (with what).

    Thread-safe; asyncio tasks use it from their loop's thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acked: set[str] = set()
        self.failed: dict[str, BaseException] = {}
        self.wrong: list[tuple[str, object]] = []
        self.failure_seconds = 0.0

    def ok(self, call_id: str, reply: Any) -> None:
        """A call returned: its reply must be its own (the count script replies with the call's id)."""
        with self._lock:
            if not (isinstance(reply, list) and reply and reply[0] in (call_id, call_id.encode())):
                self.wrong.append((call_id, reply))
            self.acked.add(call_id)

    def fail(self, call_id: str, exc: BaseException, seconds: float = 0.0) -> None:
        with self._lock:
            self.failed[call_id] = exc
            self.failure_seconds = max(self.failure_seconds, seconds)

    def errors(self) -> Counter[str]:
        return Counter(error_kind(exc) for exc in self.failed.values())

    def settle(
        self,
        runs: Mapping[bytes | str, bytes | str | int],
        counter: int,
        unknown: Callable[[BaseException], bool],
        allow_twice: bool = False,
    ) -> dict[str, int]:
        """Check the server's traces against the calls; return the tallies.

        ``runs`` is the runs hash (call id -> times it ran), ``counter`` the counter, and
        ``unknown(error)`` says whether a call that failed with ``error`` may have run (a lost
        connection: the server may have run it and its reply was lost).  Asserted:
        every reply was its own call's; no call ran twice (unless ``allow_twice``: then they are
        counted); every acknowledged call ran; a call that ran was acknowledged or failed with an
        unknown outcome; the counter is the sum of the runs.
        """
        ran = {_text(k): int(v) for k, v in runs.items()}
        assert self.wrong == [], f"replies that belong to another call: {self.wrong[:5]}"
        twice = {k: v for k, v in ran.items() if v != 1}
        assert allow_twice or twice == {}, f"calls that ran more than once: {dict(list(twice.items())[:10])}"
        lost = self.acked - ran.keys()
        assert not lost, f"{len(lost)} acknowledged calls never ran: {sorted(lost)[:10]}"
        maybe = {k for k, exc in self.failed.items() if unknown(exc)}
        phantom = ran.keys() - self.acked - maybe
        assert not phantom, f"{len(phantom)} calls ran that failed as not run: " + ", ".join(
            f"{k} ({error_kind(self.failed[k]) if k in self.failed else 'never made'})"
            for k in sorted(phantom)[:10]
        )
        assert counter == sum(ran.values()), f"counter {counter} != {sum(ran.values())} runs recorded"
        return {
            "acknowledged": len(self.acked),
            "failed": len(self.failed),
            "failed_but_ran": len(maybe & ran.keys()),
            "failed_not_run": len(self.failed) - len(maybe & ran.keys()),
            "ran_twice": len(twice),
        }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def join_all(threads: Iterable[threading.Thread], timeout: float) -> None:
    """Join every thread within ``timeout`` seconds in all; a thread still running fails the test."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        assert not thread.is_alive(), f"{thread.name} still running after {timeout} s: a hang"


class ServerProcess:
    """A server of the binary under test, on loopback, started by the test so that it can kill it."""

    def __init__(self, binary: str, directory: Path, *options: str) -> None:
        self.port = _free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.argv = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--logfile", "server.log",
            *options,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def kwargs(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port}

    def start(self, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis(socket_timeout=1, socket_connect_timeout=1, retry=no_retry(), **self.kwargs)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if probe.ping():  # LOADING (a BusyLoadingError) while it reads its data: keep waiting
                        return
                except redis.ConnectionError:
                    pass
                assert self.process.poll() is None, f"server exited: {self.log_tail()}"
                assert time.monotonic() < deadline, f"server not ready after {timeout} s: {self.log_tail()}"
                time.sleep(0.02)
        finally:
            probe.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; what the server acknowledged is what its AOF holds."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self) -> str:
        log = self.directory / "server.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
