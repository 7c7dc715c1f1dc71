"""Security: module names never become paths, arguments never become code, Redis holds nothing of ours.

Every server test runs on a real server (the ``client`` fixture).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import luaimport
from luaimport import LuaModule
from luaimport._importer import LuaFinder

# --- 1. Module names cannot escape package paths -------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, import_state: Path) -> Path:
    """``root/`` on sys.path holding package ``pkg``, and ``outside/secret.lua`` off every path.

    Next to the one good module, ``pkg`` holds files that only a crafted name could reach.
    """
    root, outside = tmp_path / "root", tmp_path / "outside"
    pkg = root / "pkg"
    (pkg / "data-files").mkdir(parents=True)
    outside.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.lua").write_text("--@function f\nreturn 'good'\n")
    (outside / "secret.lua").write_text("--@function f\nreturn 'secret'\n")
    (pkg / ".lua").write_text("--@function f\nreturn 'hidden'\n")
    (pkg / "my-mod.lua").write_text("--@function f\nreturn 'hyphen'\n")
    (pkg / "data-files" / "secret.lua").write_text("--@function f\nreturn 'data'\n")
    if os.name == "posix":  # a backslash is a file name character here, a separator on Windows
        (pkg / "sub\\secret.lua").write_text("--@function f\nreturn 'backslash'\n")
    monkeypatch.syspath_prepend(str(root))
    return tmp_path


def _crafted_names(tree: Path) -> list[str]:
    secret = str(tree / "outside" / "secret")
    names = [
        secret,  # a top-level name that is an absolute path
        "pkg." + secret,  # an absolute path as the last part of a submodule
        "pkg.",  # an empty last part: pkg/.lua
        "pkg.my-mod",  # not an identifier: pkg/my-mod.lua
        "pkg.data-files/secret",  # a slash: a file in a directory that is no package
    ]
    if os.name == "posix":
        names.append("pkg.sub\\secret")
    return names


def _joined_path(tree: Path, name: str) -> Path:
    """The file the finder's ``os.path.join(entry, leaf + '.lua')`` names when nothing checks ``name``."""
    parent, _, leaf = name.rpartition(".")
    entry = tree / "root" / parent.replace(".", os.sep) if parent else tree / "root"
    return Path(os.path.join(entry, leaf + ".lua"))


def test_crafted_names_would_reach_real_files_without_the_check(tree: Path) -> None:
    """The names below are real attacks: joined unchecked, each names an existing .lua file."""
    for name in _crafted_names(tree):
        assert _joined_path(tree, name).is_file(), name
    assert _joined_path(tree, str(tree / "outside" / "secret")) == tree / "outside" / "secret.lua"


def test_a_crafted_name_cannot_import_a_file(tree: Path) -> None:
    for name in _crafted_names(tree):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(name)
        assert name not in sys.modules
    planted = {str(_joined_path(tree, name)) for name in _crafted_names(tree)}
    assert not [m for m in list(sys.modules.values()) if getattr(m, "__file__", None) in planted]


def test_a_crafted_name_finds_no_spec(tree: Path) -> None:
    for name in _crafted_names(tree):
        assert importlib.util.find_spec(name) is None, name


def test_identifier_names_still_import_including_non_ascii(tree: Path) -> None:
    (tree / "root" / "pkg" / "modulé.lua").write_text("--@function f\nreturn 'unicode'\n")
    import pkg.good as good

    assert isinstance(good, LuaModule)
    assert importlib.import_module("pkg.modulé").__file__ == str(tree / "root" / "pkg" / "modulé.lua")


HOSTILE_NAMES = [
    "",
    ".",
    "..",
    "../../etc/x",
    "pkg.../../etc/x",
    "/etc/passwd",
    "pkg./etc/passwd",
    "pkg..good",
    "pkg.",
    ".pkg",
    "pkg.go\0od",
    "\0",
    "pkg.x\\y",
    "C:\\Windows\\x",
    "pkg.x/y",
    "pkg. good",
    "pkg.good ",
    "pkg.1x",
    "pkg.my-mod",
    "pkg.a:b",
    "pkg.~",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_the_finder_refuses_a_name_that_is_not_dotted_identifiers(tree: Path, name: str) -> None:
    pkg_path = [str(tree / "root" / "pkg")]
    assert LuaFinder().find_spec(name, pkg_path) is None
    assert LuaFinder().find_spec(name) is None


@pytest.mark.parametrize("name", [None, b"pkg.good", 7])
def test_the_finder_returns_none_for_a_name_that_is_not_a_string(tree: Path, name: Any) -> None:
    assert LuaFinder().find_spec(name) is None


class _WatchedPath(list[str]):
    """A package ``__path__`` that records whether anyone looked at its entries."""

    looked = False

    def __iter__(self) -> Iterator[str]:
        type(self).looked = True
        return super().__iter__()

    def __getitem__(self, index: Any) -> Any:
        type(self).looked = True
        return super().__getitem__(index)


@pytest.mark.parametrize("name", ["pkg./etc/passwd", "pkg.", "pkg.go\0od", "pkg.my-mod"])
def test_a_refused_name_is_refused_before_any_path_entry_is_looked_at(tree: Path, name: str) -> None:
    _WatchedPath.looked = False
    assert LuaFinder().find_spec(name, _WatchedPath([str(tree / "root" / "pkg")])) is None
    assert not _WatchedPath.looked
    assert LuaFinder().find_spec("pkg.good", _WatchedPath([str(tree / "root" / "pkg")])) is not None
    assert _WatchedPath.looked


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("", ""),
        ("a..b", ""),
        ("a.", ""),
        ("../x", ""),
        ("a/b", "a/b"),
        ("/etc/passwd", "/etc/passwd"),
        ("a\\b", "a\\b"),
        ("x\0y", "x\0y"),
        ("line\nbreak", "line\nbreak"),
        ("a b", "a b"),
        ("my-mod", "my-mod"),
        ("pkg.1x", "1x"),
    ],
)
def test_loads_rejects_a_name_that_is_not_dotted_identifiers(name: str, part: str) -> None:
    with pytest.raises(ValueError) as caught:
        luaimport.loads("--@function f\nreturn 1\n", name)
    message = str(caught.value)
    assert message.startswith(f"luaimport.loads(): module name {name!r} has ")
    if part:
        assert f"the part {part!r}, which is not a Python identifier" in message
    else:
        assert "an empty part" in message
    assert "\0" not in message and "\n" not in message  # repr()'d: nothing raw reaches a log line


def test_loads_rejects_a_name_that_is_not_a_string() -> None:
    with pytest.raises(TypeError, match="module name must be a str, not bytes"):
        luaimport.loads("--@function f\nreturn 1\n", b"mod")  # type: ignore[arg-type]


def test_loads_accepts_dotted_identifiers() -> None:
    for name in ("mod", "pkg.sub.mod", "_private", "modulé"):
        module = luaimport.loads("--@function f\nreturn 1\n", name)
        assert module.__name__ == name
        assert module.__file__ == f"<luaimport {name}>"


# --- 2. Arguments are data: no script text is ever built from them ---------------------------------

ECHO = """\
--@function echo
return {KEYS, ARGV}

--@function echo_via_call
return CALL.echo(KEYS, ARGV)
"""

HOSTILE_VALUES: list[str | bytes] = [
    "]]; redis.call('SET','pwned','1') --",
    "]]",
    "]==]",
    "[[",
    "[==[",
    "'; redis.call('SET','pwned','1') --",
    '"); redis.call("SET", "pwned", "1") --',
    "\nredis.call('SET','pwned','1')\n",
    "--@function x",
    "\n--@function x\nredis.call('SET','pwned','1')\n",
    "CALL.x",
    "CALL['pkg.mod.f']({}, {})",
    "return CALL[1](KEYS, ARGV)",
    "a\0b",
    "\0",
    b"\xff\xfe\x80\xc3(",
    "%s %d {} \\",
]


def _wire(values: list[str | bytes]) -> list[bytes]:
    """What the server holds for ``values``: redis-py sends a str as UTF-8."""
    return [v.encode() if isinstance(v, str) else v for v in values]


def _assert_nothing_written(client: redis.Redis) -> None:
    assert client.exists("pwned") == 0
    assert client.dbsize() == 0


def test_arguments_holding_lua_code_come_back_as_data(client: redis.Redis) -> None:
    echo = luaimport.loads(ECHO, "sec_echo")
    keys, args = HOSTILE_VALUES[::-1], HOSTILE_VALUES
    assert echo.echo(client, keys, args) == [_wire(keys), _wire(args)]
    _assert_nothing_written(client)


def test_arguments_passed_on_by_a_call_stay_data(client: redis.Redis) -> None:
    echo = luaimport.loads(ECHO, "sec_echo")
    assert echo.echo_via_call(client, HOSTILE_VALUES, HOSTILE_VALUES) == [
        _wire(HOSTILE_VALUES),
        _wire(HOSTILE_VALUES),
    ]
    _assert_nothing_written(client)


def test_arguments_queued_on_a_pipeline_stay_data(client: redis.Redis) -> None:
    echo = luaimport.loads(ECHO, "sec_echo")
    with client.pipeline() as pipe:
        echo.echo(pipe, HOSTILE_VALUES, HOSTILE_VALUES)
        echo.echo_via_call(pipe, [], HOSTILE_VALUES)
        assert pipe.execute() == [[_wire(HOSTILE_VALUES), _wire(HOSTILE_VALUES)], [[], _wire(HOSTILE_VALUES)]]
    _assert_nothing_written(client)


def test_the_script_text_never_depends_on_arguments(client: redis.Redis) -> None:
    echo = luaimport.loads(ECHO, "sec_echo")
    script, sha = echo.echo.script, echo.echo.sha
    assert sha == hashlib.sha1(script.encode()).hexdigest()
    for value in HOSTILE_VALUES:
        client.script_flush()  # every call loads the script (SCRIPT LOAD, then EVALSHA again)
        assert echo.echo(client, [value], [value]) == [_wire([value]), _wire([value])]
        assert client.info("memory")["number_of_cached_scripts"] == 1
        assert client.script_exists(sha) == [True]
    assert (echo.echo.script, echo.echo.sha) == (script, sha)
    for value in HOSTILE_VALUES:
        assert (value.encode() if isinstance(value, str) else value) not in script.encode()
    _assert_nothing_written(client)


# --- 3. Nothing luaimport needs lives in a writable key ----------------------------------------------


@pytest.fixture
def writers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, import_state: Path) -> Path:
    """Package ``kspkg``: ``orders`` writes a key and CALLs ``tally`` in another module, which writes one."""
    pkg = tmp_path / "kspkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tally.lua").write_text(
        "--@function bump\nreturn redis.call('INCR', KEYS[1])\n"
        "--@function read\nreturn redis.call('GET', KEYS[1])\n"
    )
    (pkg / "orders.lua").write_text(
        "--@function place\n"
        "redis.call('SET', KEYS[1], ARGV[1])\n"
        "return CALL.kspkg.tally.bump({KEYS[2]}, {})\n"
        "--@function count\n"
        "return CALL.kspkg.tally.read({KEYS[1]}, {})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return pkg


def _all_keys(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter(count=1000))


def test_imports_binds_and_read_only_calls_write_no_key(client: redis.Redis, writers: Path) -> None:
    client.flushall()
    import kspkg.orders as orders
    import kspkg.tally as tally

    assert len(luaimport.bind(client)) == 4
    assert orders.count(client, ["{o}:n"]) is None
    client.script_flush()
    assert tally.read(client, ["{o}:n"]) is None  # after a heal too
    assert client.dbsize() == 0
    assert client.info("keyspace") == {}  # no key in any database


def test_the_keyspace_holds_only_the_keys_the_scripts_wrote(client: redis.Redis, writers: Path) -> None:
    client.flushall()
    import kspkg.orders as orders

    luaimport.bind(client)
    assert orders.place(client, ["{o}:1", "{o}:n"], ["first"]) == 1
    client.script_flush()  # the next call loads its script again: still nothing but script keys
    assert orders.place(client, ["{o}:2", "{o}:n"], ["second"]) == 2
    with client.pipeline() as pipe:
        orders.place(pipe, ["{o}:3", "{o}:n"], ["third"])
        orders.count(pipe, ["{o}:n"])
        assert pipe.execute() == [3, b"3"]
    assert _all_keys(client) == {b"{o}:1", b"{o}:2", b"{o}:3", b"{o}:n"}
    assert client.dbsize() == 4
    assert list(client.info("keyspace")) == ["db0"]


# --- 4. Argument round trips at size -----------------------------------------------------------------

SIZES = """\
--@function echo
return {KEYS, ARGV}

--@function lengths
-- The byte length of every key and argument, as the server holds them.
local n = {}
for i = 1, #KEYS do n[#n + 1] = #KEYS[i] end
for i = 1, #ARGV do n[#n + 1] = #ARGV[i] end
return n
"""


@pytest.fixture
def sizes() -> LuaModule:
    return luaimport.loads(SIZES, "sec_sizes")


def test_every_byte_value_round_trips_as_keys_and_arguments(client: redis.Redis, sizes: LuaModule) -> None:
    every = bytes(range(256))
    singles = [bytes([b]) for b in range(256)]
    assert sizes.echo(client, [every], singles) == [[every], singles]
    assert sizes.lengths(client, [every], singles) == [256] + [1] * 256


def test_empty_strings_round_trip(client: redis.Redis, sizes: LuaModule) -> None:
    assert sizes.echo(client, ["", b""], ["", b"", ""]) == [[b"", b""], [b"", b"", b""]]
    assert sizes.lengths(client, [""], ["", b""]) == [0, 0, 0]


def test_a_one_megabyte_value_round_trips(client: redis.Redis, sizes: LuaModule) -> None:
    value = bytes(range(256)) * 4096
    assert len(value) == 1 << 20
    assert sizes.echo(client, [], [value]) == [[], [value]]
    assert sizes.lengths(client, [], [value]) == [1 << 20]


def test_ten_thousand_keys_and_arguments_round_trip_in_order(client: redis.Redis, sizes: LuaModule) -> None:
    keys = [f"key:{i}".encode() for i in range(10_000)]
    args = [i.to_bytes(2, "big") + b"\xff" for i in range(10_000)]
    assert sizes.echo(client, keys, args) == [keys, args]
    assert len(sizes.lengths(client, keys, args)) == 20_000
