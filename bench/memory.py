"""(g) Server memory per function, for a module whose functions share a large prelude.

Every linked script carries the module's prelude (a script cannot see another's code on Redis 7+),
so the prelude is stored once per function: that is the price of self-contained scripts, and this
measures it with ``INFO memory`` before and after ``bind``.  The Functions backend builds a
library per module; a hand-written library of the same bodies, with the prelude once, is shown
beside it as the floor.
"""

from __future__ import annotations

import sys

import _common
import redis

import luaimport

#: fields of INFO memory: (script or library text and its dict, the Lua VM's heap), newest names first
_EVAL = (("used_memory_scripts_eval", "used_memory_scripts"), ("used_memory_vm_eval", "used_memory_lua"))
_FUNCTIONS = (("used_memory_functions",), ("used_memory_vm_functions",))


def module(functions: int, helpers: int) -> str:
    """A prelude of ``helpers`` small local functions, then ``functions`` sections that use two of them."""
    prelude = [
        f"local function helper{i}(value)\n  local n = tonumber(value) or 0\n"
        f"  return n * {i} + {i % 7}\nend\n"
        for i in range(helpers)
    ]
    sections = [
        f"--@function f{i}\nreturn helper{i % helpers}(ARGV[1]) + helper{(i * 7) % helpers}(ARGV[2])\n"
        for i in range(functions)
    ]
    return "".join(prelude) + "\n" + "".join(sections)


def hand_library(source: str, functions: int) -> str:
    """The same functions registered by hand in one library: the prelude runs once, at load."""
    prelude, _, _ = source.partition("--@function")
    bodies = [
        f"redis.register_function('hand_f{i}', function(KEYS, ARGV) "
        f"return helper{i % HELPERS}(ARGV[1]) + helper{(i * 7) % HELPERS}(ARGV[2]) end)\n"
        for i in range(functions)
    ]
    return "#!lua name=hand\n" + prelude + "".join(bodies)


HELPERS = 100


def used(client: redis.Redis, fields: tuple[tuple[str, ...], ...]) -> tuple[int, int]:
    info = client.info("memory")
    text, heap = (next(int(info[name]) for name in names if name in info) for names in fields)
    return text, heap


def section(quick: bool = False) -> list[str]:
    functions = 10 if quick else 200
    source = module(functions, HELPERS)
    mod = luaimport.loads(source, "bench_memory")
    fns = [getattr(mod, f"f{i}") for i in range(functions)]
    prelude_bytes = len(source.partition("--@function")[0].encode())
    script_bytes = sum(len(fn.script.encode()) for fn in fns) / functions
    rows = []
    for _, binary in _common.binaries():
        with _common.server(binary) as url:
            client = redis.Redis.from_url(url)
            name = _common.server_name(client)
            client.script_flush()
            before = used(client, _EVAL)
            luaimport.bind(client, *fns)
            after = used(client, _EVAL)
            assert client.evalsha(fns[1].sha, 0, 2, 3) == fns[1](client, [], [2, 3])
            cells = [f"{(a - b) / functions:,.0f}" for a, b in zip(after, before, strict=True)]
            if any(names[0] in client.info("memory") for names in _FUNCTIONS):
                before = used(client, _FUNCTIONS)
                luaimport.bind(client, *fns, backend="functions")
                after = used(client, _FUNCTIONS)
                cells += [f"{(a - b) / functions:,.0f}" for a, b in zip(after, before, strict=True)]
                before = after
                client.function_load(hand_library(source, functions))
                after = used(client, _FUNCTIONS)
                cells += [f"{(a - b) / functions:,.0f}" for a, b in zip(after, before, strict=True)]
            else:
                cells += ["no Functions"] * 4
            client.close()
        rows.append(f"| {name} | {' | '.join(cells)} |")
    return [
        "## (g) Server memory per function",
        "",
        f"A module of {functions} functions sharing a prelude of {HELPERS} helpers "
        f"({prelude_bytes:,} bytes); each linked script is {script_bytes:,.0f} bytes on average, "
        "the prelude included.  Bytes per "
        "function from `INFO memory` before and after binding: *text* is the scripts' (or libraries') "
        "text and dictionary (`used_memory_scripts_eval`, `used_memory_scripts` on 6.2; "
        "`used_memory_functions`), *VM* the Lua heap holding the compiled code (`used_memory_vm_eval`, "
        "`used_memory_lua` on 6.2; `used_memory_vm_functions`).",
        "",
        "| server | scripts: text | scripts: VM | functions: text | functions: VM "
        "| hand-written library: text | hand-written: VM |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "No target: the figure says what self-contained code costs.  Each linked script holds its own "
        "copy of the prelude, compiled, so memory grows as prelude size times functions; no script can "
        "use another's code on Redis 7+.  luaimport's Functions libraries keep the same per-function "
        "copy (each callback builds its prelude on every call, so no state leaks between calls), so they "
        "cost as much or more; only a hand-written library that builds its prelude once, at load, "
        "shares it, and its prelude's state then lives from call to call.",
        "",
    ]


if __name__ == "__main__":
    print("\n".join(section("--quick" in sys.argv)))
