"""Concurrent start-up: 16 threads at once call ``install()``, import a package's Lua modules for
the first time (in random orders; they CALL each other, two of them in a cycle) and ``bind()``.

Asserted: one import hook on ``sys.meta_path``; each module executed exactly once, and every
thread got the same module objects as ``sys.modules`` holds; every thread's bind and call
worked; no thread is still running after a bounded join (no deadlock).
"""

from __future__ import annotations

import importlib
import random
import sys
import threading
import types
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import luaimport
from luaimport._importer import LuaFinder, LuaLoader

from ._support import join_all, record, server_name, size

ROUNDS = size(ci=20, full=200)
THREADS = 16
PAD = "local _ = {\n" + "  'a line for the lexer to read',\n" * 1000 + "}\n"  # a prelude that takes a moment

MODULES = {
    "base": "--@function one\nreturn 1\n--@function two\nreturn CALL.one(KEYS, ARGV) + 1\n",
    "chain": "--@function three\nreturn CALL.{pkg}.base.two(KEYS, ARGV) + 1\n",
    "ping": "--@function ping\nif tonumber(ARGV[1]) <= 0 then return 0 end\n"
    "return CALL.{pkg}.pong.pong(KEYS, {{ARGV[1] - 1}}) + 1\n",
    "pong": "--@function pong\nif tonumber(ARGV[1]) <= 0 then return 0 end\n"
    "return CALL.{pkg}.ping.ping(KEYS, {{ARGV[1] - 1}}) + 1\n",
    "top": "--@function total\n"
    "return CALL.{pkg}.chain.three(KEYS, ARGV) + CALL.{pkg}.ping.ping(KEYS, {{4}})\n",
    "single": "return CALL.{pkg}.base.one(KEYS, ARGV) * 10\n",
}


@pytest.fixture
def clean_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``tmp_path`` on ``sys.path``, no hook installed, and every import change undone afterwards."""
    meta_path = list(sys.meta_path)
    modules = dict(sys.modules)
    path_cache = dict(sys.path_importer_cache)
    monkeypatch.syspath_prepend(str(tmp_path))
    luaimport.uninstall()
    yield tmp_path
    luaimport.uninstall()
    sys.meta_path[:] = meta_path
    for name in set(sys.modules) - set(modules):
        del sys.modules[name]
    sys.path_importer_cache.clear()
    sys.path_importer_cache.update(path_cache)
    importlib.invalidate_caches()


def test_concurrent_start_up(
    clean_imports: Path, monkeypatch: pytest.MonkeyPatch, server_kwargs: dict[str, Any]
) -> None:
    executed: Counter[str] = Counter()
    count_lock = threading.Lock()
    exec_module = LuaLoader.exec_module

    def counting_exec(loader: LuaLoader, module: types.ModuleType) -> None:
        with count_lock:
            executed[module.__name__] += 1
        exec_module(loader, module)

    monkeypatch.setattr(LuaLoader, "exec_module", counting_exec)
    client = redis.Redis(**server_kwargs)
    errors: list[str] = []
    for r in range(ROUNDS):
        pkg = f"startup{r}"
        (clean_imports / pkg).mkdir()
        (clean_imports / pkg / "__init__.py").write_text("")
        for name, source in MODULES.items():
            (clean_imports / pkg / f"{name}.lua").write_text(PAD + source.format(pkg=pkg))
        importlib.invalidate_caches()
        luaimport.uninstall()
        barrier = threading.Barrier(THREADS)
        seen: list[dict[str, Any]] = []

        def start_up(
            t: int, r: int = r, pkg: str = pkg, barrier: threading.Barrier = barrier, seen: list[Any] = seen
        ) -> None:
            rng = random.Random(f"{pkg}.{t}")
            names = [f"{pkg}.{name}" for name in MODULES]
            rng.shuffle(names)
            try:
                barrier.wait(30)
                luaimport.install()
                modules = {name: importlib.import_module(name) for name in names}
                loaded = luaimport.bind(client) if t % 2 else luaimport.bind(client, *modules.values())
                assert loaded[f"{pkg}.top.total"] == modules[f"{pkg}.top"].total.sha
                assert modules[f"{pkg}.top"].total(client) == 3 + 4
                assert modules[f"{pkg}.single"](client) == 10
                seen.append(modules)
            except BaseException as exc:  # reported by the test, with the thread
                errors.append(f"round {r}, thread {t}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=start_up, args=(t,), name=f"start-up-{t}") for t in range(THREADS)]
        for thread in threads:
            thread.start()
        join_all(threads, 60)
        assert errors == []
        assert sum(isinstance(f, LuaFinder) for f in sys.meta_path) == 1
        for name in MODULES:
            assert executed[f"{pkg}.{name}"] == 1, f"{pkg}.{name} executed {executed[f'{pkg}.{name}']} times"
            assert all(modules[f"{pkg}.{name}"] is sys.modules[f"{pkg}.{name}"] for modules in seen)
        assert len(seen) == THREADS
        for name in [name for name in sys.modules if name.partition(".")[0] == pkg]:
            del sys.modules[name]  # so that bind() with no modules binds this round's only
    record(
        "concurrent start-up",
        server_name(client),
        rounds=ROUNDS,
        threads=THREADS,
        modules=len(MODULES),
        executions=sum(executed.values()),
        errors=len(errors),
    )
    client.close()
