"""A module as one Redis Functions library: layout, content-addressed names, line map, recognition.

No server here: what the library text is.  Its behaviour on servers is in
``test_functions.py``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

import luaimport
from luaimport import _library
from luaimport._library import FUNCTION_HEAD, Library
from luaimport._linker import HEAD

pytestmark = pytest.mark.usefixtures("import_state")

READS_LUA = Path(__file__).parent / "fixtures" / "flagpkg" / "reads.lua"
NAME = re.compile(r"[A-Za-z0-9_]+\Z")


def lines(library: Library) -> list[str]:
    return library.code.split("\n")


def test_the_first_three_lines_name_the_library_and_its_module() -> None:
    import lipkg.basic as basic

    library = basic.factorial.library
    first, second, third = lines(library)[:3]
    assert first == f"#!lua name={library.name}"
    assert second == f"local CALL = '{library.name}'"
    assert third == "-- luaimport library of module lipkg.basic"
    assert library.module == "lipkg.basic"


def test_one_register_function_per_function_in_file_order_with_the_linked_script_as_callback() -> None:
    import lipkg.basic as basic

    library = basic.factorial.library
    registered = re.findall(r"function_name = CALL \.\. '__(\w+)'", library.code)
    assert registered == basic.__all__
    assert list(library.functions) == [f"lipkg.basic.{name}" for name in basic.__all__]
    code = lines(library)
    start = code.index(
        "redis.register_function{function_name = CALL .. '__factorial', callback = function(KEYS, ARGV)"
    )
    body = basic.factorial.script.split("\n")[:-1]
    assert code[start + 1] == FUNCTION_HEAD
    assert code[start + 2 : start + 1 + len(body)] == body[1:]  # the linked script, but for its guard
    assert code[start + 1 + len(body)] == "end}"


def test_names_are_content_addressed_and_hold_only_letters_digits_and_underscores() -> None:
    import lipkg.basic as basic

    library = basic.factorial.library
    prefix, digest = library.name.rsplit("__", 1)
    assert prefix == "lipkg__basic"
    after_line_two = library.code.split("\n", 2)[2]
    assert digest == hashlib.sha1(after_line_two.encode()).hexdigest()[:16]
    assert basic.factorial.function_name == f"{library.name}__factorial"
    for linked in library.functions.values():
        assert linked.function is not None
        assert NAME.match(linked.function)
        assert linked.script == library.code


def test_the_same_sources_give_the_same_library_and_a_change_gives_another() -> None:
    source = "local N = 1\n--@function f\nreturn N\n--@function g\nreturn CALL.f(KEYS, ARGV)\n"
    one = luaimport.loads(source, "addr.mod")
    two = luaimport.loads(source, "addr.mod")
    changed = luaimport.loads(source.replace("N = 1", "N = 2"), "addr.mod")
    other_name = luaimport.loads(source, "addr.other")
    assert one.f.library.code == two.f.library.code
    assert one.f.function_name == two.f.function_name
    assert changed.f.library.name != one.f.library.name
    assert changed.f.library.name.startswith("addr__mod__")
    assert other_name.f.library.name.startswith("addr__other__")
    assert other_name.f.library.name.rsplit("__", 1)[1] != one.f.library.name.rsplit("__", 1)[1]


def test_a_callee_from_another_module_travels_with_its_caller_and_versions_it() -> None:
    import lipkg.uses_single as uses

    library = uses.incr_twice.library
    assert "return redis.call('INCRBY', key, by)" in library.code  # lipkg.single, linked in
    assert list(library.functions) == ["lipkg.uses_single.incr_twice"]


def test_a_module_name_that_is_not_ascii_becomes_a_valid_library_name() -> None:
    mod = luaimport.loads("--@function f\nreturn 1\n", "pkg.módulo")
    assert mod.f.library.name.startswith("pkg__m_f3_dulo__")
    assert NAME.match(mod.f.function_name)


def test_a_markerless_module_is_one_function_named_after_its_last_name() -> None:
    import lipkg.single as single

    library = single.library
    assert list(library.functions) == ["lipkg.single"]
    assert library.functions["lipkg.single"].function == f"{library.name}__single"


@pytest.mark.parametrize(
    ("function", "flags"),
    [
        ("get", "flags = {'no-writes'}, "),
        ("set_allow_oom", "flags = {'allow-oom'}, "),
        ("set_bare_flags", "flags = {}, "),
        ("many_flags", "flags = {'allow-oom', 'allow-stale', 'no-writes'}, "),
        ("plain", ""),
    ],
)
def test_flags_go_to_register_function_and_no_shebang_is_left(function: str, flags: str) -> None:
    import flagpkg.reads as reads

    library = reads.get.library
    header = f"redis.register_function{{function_name = CALL .. '__{function}', {flags}callback = "
    assert header in library.code
    assert library.code.count("#!lua") == 1  # the name line only
    assert library.functions[f"flagpkg.reads.{function}"].readonly == getattr(reads, function).readonly


def test_every_user_line_maps_to_its_own_source_line() -> None:
    import flagpkg.reads as reads

    library = reads.get.library
    source = READS_LUA.read_text().splitlines()
    mapped = 0
    for number, text in enumerate(lines(library)[:-1], 1):
        origin = library.line_map.lookup(number)
        assert origin is not None, number
        if origin.generated:
            continue
        assert origin.filename == str(READS_LUA)
        if "CALL." not in origin.source_line:  # CALL references are the only rewritten text
            assert text == origin.source_line == source[origin.lineno - 1]
        mapped += 1
    assert mapped > 50


def test_the_generated_lines_map_to_the_function_they_open_and_close() -> None:
    import flagpkg.reads as reads

    code = lines(reads.get.library)
    header = next(i for i, t in enumerate(code, 1) if "CALL .. '__write_directly'" in t)
    origin = reads.get.library.line_map.lookup(header)
    assert origin is not None
    assert (origin.lineno, origin.function) == (14, "flagpkg.reads.write_directly")  # its marker
    name_line = reads.get.library.line_map.lookup(1)
    assert name_line is not None
    assert name_line.function == "flagpkg.reads.<library>"


def test_a_prelude_using_dots_makes_its_callbacks_vararg_as_its_chunk_is_in_script_mode() -> None:
    dots = luaimport.loads("local n = select('#', ...)\n--@function f\nreturn n\n", "dots")
    plain = luaimport.loads("local n = 0\n--@function f\nreturn n\n", "nodots")
    assert "callback = function(KEYS, ARGV, ...)" in dots.f.library.code
    assert "callback = function(KEYS, ARGV)\n" in plain.f.library.code


def test_the_guard_marks_replies_that_read_like_a_missing_function() -> None:
    assert FUNCTION_HEAD.startswith(HEAD[: HEAD.index(" end end return reply end}")])
    assert "'Function not found', 1, true" in FUNCTION_HEAD
    assert "(a reply of the function, not a missing function)" in FUNCTION_HEAD


def test_luaimport_recognises_its_own_libraries_and_nothing_else() -> None:
    import lipkg.basic as basic

    library = basic.factorial.library
    assert _library.module_of(library.name, library.code) == "lipkg.basic"
    tampered = library.code.replace("return 1", "return 2")
    assert _library.module_of(library.name, tampered) is None  # the hash no longer agrees
    renamed = library.code.replace(library.name, "lipkg__basic__0000000000000000")
    assert _library.module_of("lipkg__basic__0000000000000000", renamed) is None
    foreign = "#!lua name=lipkg__basic__0123456789abcdef\n-- luaimport library of module lipkg.basic\n"
    assert _library.module_of("lipkg__basic__0123456789abcdef", foreign) is None
    assert _library.module_of("x", "#!lua name=x\nredis.register_function('x', function() end)\n") is None
    assert _library.module_of(library.name, "") is None
