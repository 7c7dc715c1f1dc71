"""(e) Import and link time of large modules, against CPython's ``compile()`` of as much Python.

Importing a ``.lua`` module lexes it, cuts it into sections and checks its ``CALL`` references
(:func:`luaimport.loads`: what ``import pkg.mod`` runs once it has the file's bytes); each
function's script is linked on its first use, or by ``bind``.  Both are timed: the import, and the
import followed by the linked script of every function.  The yardstick is ``compile()`` of Python
source of the same byte count: what CPython does to import a ``.py`` file that has no cached
bytecode.

The modules are generated: a prelude of local helpers shared by every function, then functions
of a few statements each (a doc comment; every fourth with ``--@keys`` and ``--@args``), in
chains of :data:`CHAIN` where each calls the next with ``CALL``, so the head of a chain links
``CHAIN - 1`` callees.  The Python mirrors them function for function.
"""

from __future__ import annotations

import functools
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable

import _common

import luaimport
from luaimport import _runtime

#: functions per CALL chain: the head of each chain links the ``CHAIN - 1`` after it
CHAIN = 11
SIZES = (100, 1_000, 5_000)
QUICK_SIZES = (10, 20, 50)
CHART = _common.DOCS / "benchmarks-import.svg"

LUA_PRELUDE = """\
-- Counters with a limit, over plain keys.
local LIMIT = 1000000
local PREFIX = 'bench:'

local function clamp(n)
  if n > LIMIT then return LIMIT end
  if n < -LIMIT then return -LIMIT end
  return n
end

local function number(value, default)
  local n = tonumber(value)
  if n == nil then return default end
  return clamp(n)
end

local function key(...)
  return PREFIX .. table.concat({...}, ':')
end

local function expire_later(name, seconds)
  if seconds and seconds > 0 then
    redis.call('EXPIRE', name, seconds)
  end
end

"""

PYTHON_PRELUDE = '''\
"""Counters with a limit, over plain keys."""
LIMIT = 1000000
PREFIX = "bench:"


def clamp(n):
    if n > LIMIT:
        return LIMIT
    if n < -LIMIT:
        return -LIMIT
    return n


def number(value, default):
    try:
        return clamp(float(value))
    except (TypeError, ValueError):
        return default


def key(*parts):
    return PREFIX + ":".join(parts)


def expire_later(call, name, seconds):
    if seconds and seconds > 0:
        call("EXPIRE", name, seconds)

'''


def _calls_next(i: int, functions: int) -> bool:
    return (i + 1) % CHAIN != 0 and i + 1 < functions


def lua_module(functions: int) -> str:
    """The prelude, then ``functions`` sections ``f0``, ``f1``... in CALL chains."""
    parts = [LUA_PRELUDE]
    for i in range(functions):
        parts.append(f"--@function f{i}\n-- Add ARGV[1] to KEYS[1], up to the limit.\n")
        if i % 4 == 0:
            parts.append("--@keys counter\n--@args amount\n")
        parts.append(
            f"local n = number(ARGV[1], {i % 9 + 1})\n"
            "local total = redis.call('INCRBY', KEYS[1], n)\n"
            "if total > LIMIT then total = LIMIT end\n"
        )
        if _calls_next(i, functions):
            parts.append(f"return CALL.f{i + 1}(KEYS, {{total}})\n\n")
        else:
            parts.append("return total\n\n")
    return "".join(parts)


def python_module(size: int) -> str:
    """Python source of exactly ``size`` bytes: the Lua module's functions, mirrored, as many as fit."""
    parts, used, i = [PYTHON_PRELUDE], len(PYTHON_PRELUDE), 0
    while True:
        tail = f"    return f{i + 1}(call, keys, [total])\n" if (i + 1) % CHAIN else "    return total\n"
        function = (
            f"\n\ndef f{i}(call, keys, argv):\n"
            '    """Add argv[0] to keys[0], up to the limit."""\n'
            f"    n = number(argv[0], {i % 9 + 1})\n"
            '    total = call("INCRBY", keys[0], n)\n'
            "    if total > LIMIT:\n"
            "        total = LIMIT\n" + tail
        )
        if used + len(function) > size:
            break
        parts.append(function)
        used += len(function)
        i += 1
    parts.append("#" * max(size - used - 1, 0) + "\n" * (size > used))
    return "".join(parts)


def import_only(source: str) -> luaimport.LuaModule:
    """Import the module from its text: what ``import`` does."""
    return luaimport.loads(source, "bench_imports")


def import_all(source: str) -> None:
    """Import the module from its text and link every function's script, as their first calls would."""
    module = import_only(source)
    for name in module.__all__:
        getattr(module, name).sha  # noqa: B018 (linked on first use)


def cpu_times(fns: list[Callable[[], object]], rounds: int, calls: int) -> list[list[float]]:
    """:func:`_common.interleaved` in CPU time (µs per call), a collection before each turn (the garbage
    collector stays on), and a first round that warms up and is dropped."""
    samples = _common.interleaved(fns, rounds + 1, calls, gc.collect, time.process_time)
    return [times[1:] for times in samples]


def imports_and_compiles(functions: int, rounds: int) -> tuple[list[list[float]], int]:
    """ms per import, per import and link of every function, and per ``compile()`` of as many bytes,
    taking turns; and the byte count."""
    source = lua_module(functions)
    python = python_module(len(source))
    sides = [
        lambda: import_only(source),
        lambda: import_all(source),
        lambda: compile(python, "<bench>", "exec"),
    ]
    return _common.in_ms(cpu_times(sides, rounds, 1)), len(source)


def link_one(sizes: tuple[int, ...], rounds: int, links: int) -> dict[int, list[float]]:
    """µs to link one function with ``CHAIN - 1`` callees (a chain's head) in a module of each size.

    The modules take turns, so a slow patch of the machine weighs on every size alike.
    """
    relinks = []
    for functions in sizes:
        module = luaimport.loads(lua_module(functions), "bench_imports")
        relinks.append(
            functools.partial(_relink, getattr(module, f"f{CHAIN * max(functions // CHAIN // 2 - 1, 0)}"))
        )
    return dict(zip(sizes, cpu_times(relinks, rounds, links), strict=True))


def _relink(head: luaimport.LuaFunction) -> None:
    _runtime.invalidate_links()  # forget every linked script, as a reload does
    head.sha  # noqa: B018


def chart(points: list[tuple[int, float, float]]) -> str:
    """An SVG line chart of (functions, import ms, import and link ms, compile ms), written by hand: same
    figures, same file."""
    width, height, left, right, top, bottom = 640, 400, 70, 20, 40, 60
    x_max = max(p[0] for p in points)
    x_step = _tick_step(x_max)
    y_top = max(max(p[1:]) for p in points)
    y_step = _tick_step(y_top)
    y_max = y_step * (int(y_top / y_step) + 1)

    def x(value: float) -> float:
        return left + (width - left - right) * value / x_max

    def y(value: float) -> float:
        return height - bottom - (height - top - bottom) * value / y_max

    middle = (top + height - bottom) / 2
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        _text(width / 2, 20, "Import time against module size", 'text-anchor="middle" font-size="14"'),
    ]
    for i in range(int(x_max / x_step) + 1):
        value = i * x_step
        out.append(_line(x(value), height - bottom, x(value), height - bottom + 5, "black"))
        out.append(_text(x(value), height - bottom + 19, f"{value:,.0f}", 'text-anchor="middle"'))
    for i in range(int(y_max / y_step) + 1):
        value = i * y_step
        out.append(_line(left, y(value), width - right, y(value), "#ddd"))
        out.append(_text(left - 8, y(value) + 4, f"{value:g}", 'text-anchor="end"'))
    out += [
        _line(left, height - bottom, width - right, height - bottom, "black"),
        _line(left, top, left, height - bottom, "black"),
        _text((left + width - right) / 2, height - 18, "functions in the module", 'text-anchor="middle"'),
        _text(
            18,
            middle,
            "CPU time (ms, median)",
            f'text-anchor="middle" transform="rotate(-90 18 {middle:.0f})"',
        ),
    ]
    series = (
        (1, "#1f77b4", "luaimport: import"),
        (2, "#2ca02c", "luaimport: import, then link every function"),
        (3, "#d62728", "compile() of as much Python"),
    )
    for column, colour, label in series:
        line = " ".join(f"{x(p[0]):.1f},{y(p[column]):.1f}" for p in points)
        out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{x(p[0]):.1f}" cy="{y(p[column]):.1f}" r="4" fill="{colour}"/>' for p in points]
        row = top + 10 + 20 * (column - 1)
        out.append(_line(left + 15, row, left + 45, row, colour, 2))
        out.append(f'<circle cx="{left + 30}" cy="{row}" r="4" fill="{colour}"/>')
        out.append(_text(left + 52, row + 4, label))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _line(x1: float, y1: float, x2: float, y2: float, colour: str, width: int = 1) -> str:
    ends = f'x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"'
    return f'<line {ends} stroke="{colour}" stroke-width="{width}"/>'


def _text(x: float, y: float, text: str, attributes: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" {attributes}>{text}</text>'.replace(" >", ">")


def _tick_step(top: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving four to ten ticks up to ``top``."""
    step = 10 ** math.floor(math.log10(top / 4))
    for factor in (1, 2, 5, 10):
        if top / (step * factor) <= 10:
            return step * factor
    return step * 10


def section(quick: bool = False) -> list[str]:
    sizes, rounds, links = (QUICK_SIZES, 1, 5) if quick else (SIZES, 21, 200)
    rows, points = [], []
    medians: dict[int, tuple[float, float]] = {}
    link_samples = link_one(sizes, rounds, links)
    link_us = {functions: statistics.median(times) for functions, times in link_samples.items()}
    for functions in sizes:
        (imports, linked, compiles), size = imports_and_compiles(functions, rounds)
        alone, all_linked = _common.ratios(imports, compiles), _common.ratios(linked, compiles)
        medians[functions] = (statistics.median(imports), statistics.median(linked))
        points.append((functions, *medians[functions], statistics.median(compiles)))
        rows.append(
            f"| {functions:,} | {size:,} | {_common.spread(imports, ' ms', 1)} | "
            f"{_common.spread(linked, ' ms', 1)} | {_common.spread(compiles, ' ms', 1)} | "
            f"{_common.spread(alone, digits=2)} | {_common.spread(all_linked, digits=2)} | "
            f"{_common.spread(link_samples[functions], ' µs', 1)} |"
        )
        holds = _common.judged(alone, 1.0)
        _common.figure(
            f"(e) import / compile() of as much Python, {functions:,} functions",
            _common.spread(alone, digits=2),
            "<= 1.0x",
            holds,
            "" if holds else "(a lexer and parser in Python against CPython's compiler in C: see (e))",
        )
        if functions == sizes[-1]:
            _common.figure(
                f"(e) import and link of every function / compile(), {functions:,} functions",
                _common.spread(all_linked, digits=2),
                "none",
                None,
                "(import links nothing: a script is linked at its first call or by bind)",
            )
    small, middle, large = sizes
    for what, column in (("import", 0), ("import and link of every function", 1)):
        growth = medians[large][column] / medians[middle][column]
        _common.figure(
            f"(e) {what}, {large:,} / {middle:,} functions", f"{growth:.2f}x", "<= 5.5x", growth <= 5.5
        )
    flat = " / ".join(f"{link_us[n]:.1f}" for n in sizes)
    _common.figure(
        f"(e) link of one function with {CHAIN - 1} callees, {small:,} / {middle:,} / {large:,} functions",
        f"{flat} µs",
        "flat in module size",
        link_us[large] <= 1.5 * link_us[small],
        f"(holds: the {large:,}-function figure within 1.5x of the {small:,}-function one)",
    )
    if not quick:
        CHART.write_text(chart(points))
    return [
        "## (e) Import and link",
        "",
        "*import*: `luaimport.loads` of a generated module, what `import pkg.mod` runs once it has the "
        "file's bytes: lexing, sections, CALL checks.  Import links no script: each function's is "
        "linked at its first call, or by `bind`.  *import + link all*: the import, then the linked "
        "script of every function.  *compile()*: CPython's `compile()` of Python source of the "
        "same byte count (a `.py` file imported without cached bytecode).  The module: a prelude of "
        f"local helpers shared by every function, then functions of a few statements each (a doc "
        f"comment, every fourth with `--@keys` and `--@args`), in CALL chains of {CHAIN}, so a script "
        f"holds {(CHAIN + 1) / 2:.0f} functions on average; the Python mirrors them function for "
        "function.  CPU time (`time.process_time`) of one run, the garbage collector on (collected "
        f"before each run); {rounds} rounds, the three taking turns; median (interquartile range).",
        "",
        "*import / compile()*: per-round ratio [target: at most 1.0x].  Growth: the median at "
        f"{large:,} functions over the one at {middle:,} [target: at most 5.5x, linear].  *link one*: "
        f"linking the head of a chain ({CHAIN - 1} callees) again after forgetting every linked "
        f"script, {links} times a round [target: flat in module size].",
        "",
        "| functions | bytes | import | import + link all | compile() | import / compile() "
        "| import + link all / compile() | link one |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "![Import time against module size](benchmarks-import.svg)",
        "",
        "Where *import / compile()* is above 1.0x, it is a lexer and a parser in Python against "
        "CPython's compiler in C.  Of an import of the 5,000-function module (CPU time of each stage, "
        "fastest of 9 runs, 2026-12-03), about 40% is lexing (one regular-expression scan over the text, "
        "then a few Python steps for each of its 248,517 tokens), 45% is cutting sections, reading "
        "directives and finding CALLs, and 15% is checking the CALLs and making the module's functions.  "
        "The tokens are kept as four parallel lists rather than an object each, so the garbage collector "
        "has nothing to walk however large the module.  Linking is left to each function's first call "
        "(or `bind`), where it costs time in proportion to the functions a script holds (*link one*).",
        "",
    ]


if __name__ == "__main__":
    print("\n".join(section("--quick" in sys.argv)))
