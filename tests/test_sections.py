"""Stage 2: the ``.lua`` module format (prelude, ``--@function`` sections, docs, CALLs).

No server is needed: these tests only call ``_sections.parse``.
"""

from __future__ import annotations

import pytest

from luaimport._errors import LuaSyntaxError
from luaimport._sections import CallRef, parse
from luaimport._source import decode

FILENAME = "pkg/mod.lua"


def parse_text(text: str | bytes):
    return parse(decode(text, "mod", FILENAME))


def parse_error(text: str) -> LuaSyntaxError:
    with pytest.raises(LuaSyntaxError) as info:
        parse_text(text)
    assert info.value.filename == FILENAME
    return info.value


def body(unit, section) -> str:
    return unit.source.text[section.start : section.end]


def spans(unit, section) -> list[str]:
    return [unit.source.text[ref.start : ref.end] for ref in section.calls]


# --- prelude and sections ----------------------------------------------------

MODULE = """\
local PREFIX = 'x:'
local function key(k) return PREFIX .. k end

--@function get
return redis.call('GET', key(KEYS[1]))

--@function set
redis.call('SET', key(KEYS[1]), ARGV[1])
return 1
"""


def test_prelude_and_function_line_ranges():
    unit = parse_text(MODULE)
    assert unit.script is None
    assert list(unit.functions) == ["get", "set"]
    prelude, get, set_ = unit.prelude, unit.functions["get"], unit.functions["set"]
    assert (prelude.marker_line, prelude.first_line, prelude.last_line) == (0, 1, 3)
    assert (get.name, get.marker_line, get.first_line, get.last_line) == ("get", 4, 5, 6)
    assert (set_.name, set_.marker_line, set_.first_line, set_.last_line) == ("set", 7, 8, 9)


def test_section_offsets_cover_their_lines():
    unit = parse_text(MODULE)
    assert body(unit, unit.prelude) == ("local PREFIX = 'x:'\nlocal function key(k) return PREFIX .. k end\n")
    assert body(unit, unit.functions["get"]) == "return redis.call('GET', key(KEYS[1]))\n"
    assert body(unit, unit.functions["set"]) == "redis.call('SET', key(KEYS[1]), ARGV[1])\nreturn 1"


def test_sections_lists_prelude_then_functions_in_file_order():
    unit = parse_text("--@function b\nreturn 1\n--@function a\nreturn 2\n")
    assert [s.name for s in unit.sections()] == ["", "b", "a"]
    assert unit.name == "mod"


def test_marker_on_first_line_gives_empty_prelude():
    unit = parse_text("--@function f\nreturn 1\n")
    prelude = unit.prelude
    assert (prelude.first_line, prelude.last_line) == (1, 0)
    assert prelude.start == prelude.end == 0
    assert prelude.calls == []


def test_adjacent_markers_give_an_empty_section():
    unit = parse_text("--@function a\n--@function b\nreturn 1\n")
    a, b = unit.functions["a"], unit.functions["b"]
    assert (a.marker_line, a.first_line, a.last_line) == (1, 2, 1)
    assert body(unit, a) == ""
    assert (b.marker_line, b.first_line, b.last_line) == (2, 3, 3)
    assert body(unit, b) == "return 1"


@pytest.mark.parametrize("ending", ["", "\n"], ids=["no-final-newline", "final-newline"])
def test_last_section_ends_at_last_line_with_or_without_final_newline(ending):
    unit = parse_text("x = 1\n--@function f\nlocal a = 1\nreturn a" + ending)
    f = unit.functions["f"]
    assert (f.first_line, f.last_line) == (3, 4)
    assert body(unit, f) == "local a = 1\nreturn a"


@pytest.mark.parametrize("ending", ["", "\n"], ids=["no-final-newline", "final-newline"])
def test_marker_as_last_line_gives_an_empty_function(ending):
    unit = parse_text("x = 1\n--@function f" + ending)
    f = unit.functions["f"]
    assert (f.marker_line, f.first_line, f.last_line) == (2, 3, 2)
    assert body(unit, f) == ""


def test_crlf_file_sections_count_lines_like_lua():
    unit = parse_text(b"x = 1\r\n--@function f\r\nreturn 1\r\n")
    f = unit.functions["f"]
    assert (f.marker_line, f.first_line, f.last_line) == (2, 3, 3)
    assert body(unit, f) == "return 1"


# --- what is and is not a marker ---------------------------------------------


def test_marker_with_leading_spaces_and_tabs():
    unit = parse_text("x = 1\n  \t--@function f\nreturn 1\n")
    assert unit.functions["f"].marker_line == 2


def test_marker_with_tab_before_name_and_trailing_space():
    unit = parse_text("--@function\tf   \nreturn 1\n")
    assert list(unit.functions) == ["f"]


def test_marker_inside_long_string_is_not_a_marker():
    unit = parse_text("local s = [[\n--@function f\n]]\n--@function g\nreturn s\n")
    assert list(unit.functions) == ["g"]
    assert (unit.prelude.first_line, unit.prelude.last_line) == (1, 3)


def test_marker_inside_long_comment_is_not_a_marker():
    unit = parse_text("--[==[\n--@function f\n--@bogus\n]==]\nreturn 1\n")
    assert unit.functions == {}
    assert unit.script is not None


def test_marker_inside_short_string_continuation_is_not_a_marker():
    unit = parse_text('local s = "a\\\n--@function f"\nreturn s\n')
    assert unit.functions == {}


def test_marker_after_code_on_same_line_is_not_a_marker():
    unit = parse_text("return 1 --@function f\n")
    assert unit.functions == {}
    assert unit.script is not None


def test_marker_after_long_comment_on_same_line_is_not_a_marker():
    unit = parse_text("--[[ x ]] --@function f\nreturn 1\n")
    assert unit.functions == {}


def test_three_dash_emmylua_annotations_are_not_directives():
    unit = parse_text("---@param x number\n--@function f\n---@return integer\nreturn 1\n---@function g\n")
    assert list(unit.functions) == ["f"]
    f = unit.functions["f"]
    assert (f.keys, f.args, f.flags) == (None, None, None)


def test_space_after_dashes_is_not_a_marker():
    unit = parse_text("-- @function f\nreturn 1\n")
    assert unit.functions == {}


# --- function names ----------------------------------------------------------


@pytest.mark.parametrize("name", ["get", "Set2", "incr_by", "a", "print", "self", "match", "CALLER"])
def test_valid_function_names(name):
    unit = parse_text(f"--@function {name}\nreturn 1\n")
    assert list(unit.functions) == [name]
    assert unit.functions[name].name == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("end", "is a Lua keyword"),
        ("nil", "is a Lua keyword"),
        ("and", "is a Lua keyword"),
        ("class", "is a Python keyword"),
        ("None", "is a Python keyword"),
        ("lambda", "is a Python keyword"),
        ("_private", "starts with '_'"),
        ("__init__", "starts with '_'"),
        ("1abc", "is not an identifier"),
        ("a-b", "is not an identifier"),
        ("a.b", "is not an identifier"),
        ("caf\u00e9", "is not an identifier"),
    ],
)
def test_invalid_function_names(name, reason):
    err = parse_error(f"x = 1\n\n--@function {name}\nreturn 1\n")
    assert err.lineno == 3
    assert err.text == f"--@function {name}"
    assert "invalid function name" in err.msg
    assert reason in err.msg
    assert repr(name) in err.msg


@pytest.mark.parametrize("marker", ["--@function", "--@function   ", "--@function a b"])
def test_malformed_marker(marker):
    err = parse_error(f"x = 1\n{marker}\nreturn 1\n")
    assert err.lineno == 2
    assert "malformed marker" in err.msg
    assert err.text == marker


def test_duplicate_function_names_the_first_line():
    err = parse_error("--@function f\nreturn 1\n\n--@function g\nreturn 2\n--@function f\nreturn 3\n")
    assert err.lineno == 6
    assert err.text == "--@function f"
    assert "duplicate function 'f'" in err.msg
    assert "first defined at line 1" in err.msg


# --- directives --------------------------------------------------------------


def test_unknown_directive_in_prelude():
    err = parse_error("x = 1\n  --@bogus 3\n--@function f\nreturn 1\n")
    assert err.lineno == 2
    assert "unknown directive --@bogus" in err.msg
    assert err.text == "  --@bogus 3"


def test_declaration_in_function_body_is_misplaced():
    err = parse_error("--@function f\nlocal a = 1\n--@keys k\nreturn a\n")
    assert err.lineno == 3
    assert "directive --@keys must come right after a '--@function' line" in err.msg


def test_unknown_directive_in_function_body():
    err = parse_error("--@function f\nlocal a = 1\n--@kyes k\nreturn a\n")
    assert err.lineno == 3
    assert "unknown directive --@kyes" in err.msg


def test_unknown_directive_right_after_marker():
    err = parse_error("--@function f\n--@bogus x\nreturn 1\n")
    assert err.lineno == 2
    assert "unknown directive --@bogus" in err.msg


def test_unknown_directive_in_markerless_file():
    err = parse_error("-- doc\n\nlocal a = 1\n--@Function f\nreturn a\n")
    assert err.lineno == 4
    assert "unknown directive --@Function" in err.msg


def test_directive_like_text_after_code_is_an_ordinary_comment():
    unit = parse_text("return 1 --@bogus\n")
    assert unit.script is not None


def test_malformed_directive():
    err = parse_error("x = 1\n--@ function f\n")
    assert err.lineno == 2
    assert "malformed directive" in err.msg


# --- docs --------------------------------------------------------------------


def test_module_doc_is_leading_comment_block():
    unit = parse_text("-- Counters.\n--\n-- Keeps counts.\n\n-- not doc\nlocal x = 1\n")
    assert unit.doc == "Counters.\n\nKeeps counts."


def test_module_doc_ends_at_code():
    unit = parse_text("-- Doc line.\nlocal x = 1\n-- not doc\n")
    assert unit.doc == "Doc line."


def test_module_doc_ends_at_marker():
    unit = parse_text("-- Module doc.\n--@function f\n-- Function doc.\nreturn 1\n")
    assert unit.doc == "Module doc."
    assert unit.functions["f"].doc == "Function doc."


def test_module_doc_must_start_on_line_one():
    unit = parse_text("\n-- not a doc\nreturn 1\n")
    assert unit.doc is None


def test_module_doc_absent_when_file_starts_with_code():
    unit = parse_text("local x = 1 -- trailing\n-- later\n")
    assert unit.doc is None


def test_module_doc_from_long_comment():
    unit = parse_text("--[[\n  Title.\n\n  Body text.\n]]\nreturn 1\n")
    assert unit.doc == "Title.\n\nBody text."


def test_module_doc_strips_extra_dashes():
    unit = parse_text("--- Three dashes.\n---- Four.\nreturn 1\n")
    assert unit.doc == "Three dashes.\nFour."


def test_function_doc_is_comment_block_after_marker():
    unit = parse_text("--@function incr\n-- Add one.\n-- Returns the new value.\nreturn 1\n-- not doc\n")
    assert unit.functions["incr"].doc == "Add one.\nReturns the new value."


def test_function_doc_absent_after_blank_line():
    unit = parse_text("--@function f\n\n-- not doc\nreturn 1\n")
    assert unit.functions["f"].doc is None


def test_function_doc_absent_when_code_follows_marker():
    unit = parse_text("--@function f\nreturn 1 -- not doc\n-- nor this\n")
    assert unit.functions["f"].doc is None


def test_function_doc_from_indented_and_long_comments():
    unit = parse_text("--@function f\n  -- Indented.\n--[=[\nLong part.\n]=]\nreturn 1\n")
    assert unit.functions["f"].doc == "Indented.\nLong part."


def test_each_function_gets_its_own_doc():
    unit = parse_text("--@function a\n-- A.\nreturn 1\n--@function b\nreturn 2\n--@function c\n-- C.\n")
    assert [s.doc for s in unit.functions.values()] == ["A.", None, "C."]


# --- marker-less files -------------------------------------------------------


def test_markerless_file_is_one_script():
    text = "-- Doc.\nlocal a = KEYS[1]\nreturn redis.call('GET', a)\n"
    unit = parse_text(text)
    assert unit.functions == {}
    assert unit.script is not None
    assert unit.sections() == [unit.script]
    assert unit.script.name == "mod"
    assert (unit.script.first_line, unit.script.last_line) == (1, 3)
    assert body(unit, unit.script) == text.rstrip("\n")
    assert unit.doc == "Doc."


@pytest.mark.parametrize(
    "text", ["", "   ", "\n", " \t\n\n  \n"], ids=["empty", "spaces", "newline", "blank"]
)
def test_empty_or_whitespace_file_is_markerless_with_empty_script(text):
    unit = parse_text(text)
    assert unit.functions == {}
    assert unit.script is not None
    assert unit.script.calls == []
    assert unit.script.first_line == 1
    assert body(unit, unit.script).strip() == ""
    assert unit.doc is None


# --- CALL references ---------------------------------------------------------


def test_call_dot_name_is_recorded_with_its_span():
    unit = parse_text("--@function f\nreturn CALL.helper(KEYS, ARGV)\n")
    (ref,) = unit.functions["f"].calls
    assert ref == CallRef("helper", 2, 21, 32)
    assert unit.source.text[ref.start : ref.end] == "CALL.helper"


def test_call_dotted_path_is_recorded_with_its_span():
    unit = parse_text("--@function f\nlocal r = CALL.pkg.mod.name({}, {})\nreturn r\n")
    (ref,) = unit.functions["f"].calls
    assert (ref.target, ref.line) == ("pkg.mod.name", 2)
    assert spans(unit, unit.functions["f"]) == ["CALL.pkg.mod.name"]


@pytest.mark.parametrize(
    ("literal", "target"),
    [
        ("'pkg.mod.name'", "pkg.mod.name"),
        ('"other.fn"', "other.fn"),
        (" [[x]] ", "x"),
        (" [=[a.b]=] ", "a.b"),
    ],
)
def test_call_bracket_string_is_recorded_with_its_span(literal, target):
    unit = parse_text(f"--@function f\n\nreturn CALL[{literal}](KEYS, ARGV)\n")
    (ref,) = unit.functions["f"].calls
    assert (ref.target, ref.line) == (target, 3)
    assert spans(unit, unit.functions["f"]) == [f"CALL[{literal}]"]


def test_call_reference_span_includes_inner_spaces():
    unit = parse_text("return CALL . a . b ( ) + CALL[ 'c' ]()\n")
    assert [r.target for r in unit.script.calls] == ["a.b", "c"]
    assert spans(unit, unit.script) == ["CALL . a . b", "CALL[ 'c' ]"]


def test_calls_are_recorded_per_section_in_order():
    text = (
        "local x = CALL.init\n"
        "--@function f\n"
        "local a = CALL.one({}, {}) .. CALL['two']({}, {})\n"
        "--@function g\n"
        "return CALL.three.four({}, {})\n"
    )
    unit = parse_text(text)
    assert [(r.target, r.line) for r in unit.prelude.calls] == [("init", 1)]
    assert [(r.target, r.line) for r in unit.functions["f"].calls] == [("one", 3), ("two", 3)]
    assert [(r.target, r.line) for r in unit.functions["g"].calls] == [("three.four", 5)]
    assert spans(unit, unit.functions["f"]) == ["CALL.one", "CALL['two']"]


def test_call_offsets_are_in_normalised_text_for_crlf_files():
    unit = parse_text(b"-- doc\r\n\r\nreturn CALL.f()\r\n")
    (ref,) = unit.script.calls
    assert (ref.line, ref.start, ref.end) == (3, 15, 21)
    assert spans(unit, unit.script) == ["CALL.f"]


def test_call_after_concat_operator_is_a_reference():
    unit = parse_text("return 'a'..CALL.f()\n")
    assert [r.target for r in unit.script.calls] == ["f"]


def test_call_in_strings_and_comments_is_ignored():
    text = (
        "-- CALL here\n"
        "--[[ CALL.x ]]\n"
        "local a = 'CALL'\n"
        'local b = "CALL.y"\n'
        "local c = [==[ CALL['z'] ]==] -- CALL\n"
        "return a\n"
    )
    unit = parse_text(text)
    assert unit.script.calls == []


def test_field_or_method_named_call_is_ignored():
    unit = parse_text("local t = {}\nt.CALL = 1\nreturn t.CALL + obj:CALL() + a.CALL.b\n")
    assert unit.script.calls == []


@pytest.mark.parametrize(
    "line",
    ["local CALL = 1", "CALL(KEYS, ARGV)", "return CALL", "return CALL:f()", "local t = {CALL = 1}"],
)
def test_bare_call_is_an_error(line):
    err = parse_error(f"--@function f\n-- doc\n{line}\n")
    assert err.lineno == 3
    assert err.text == line
    assert "bare CALL" in err.msg


def test_bare_call_at_end_of_file_is_an_error():
    err = parse_error("x = 1\nreturn CALL")
    assert err.lineno == 2
    assert "bare CALL" in err.msg


@pytest.mark.parametrize("index", ["x", "1", "'a' .. b", "f()", ""])
def test_call_index_must_be_one_string_literal(index):
    line = f"return CALL[{index}]()"
    err = parse_error(f"local a = 1\n{line}\n")
    assert err.lineno == 2
    assert err.text == line
    assert "CALL[...] takes one string literal" in err.msg


@pytest.mark.parametrize("literal", ["'a b'", "'1x'", "''", "'a..b'", "'.a'"])
def test_call_index_string_must_be_a_dotted_name(literal):
    err = parse_error(f"return CALL[{literal}]()\n")
    assert err.lineno == 1
    assert "is not a dotted function name" in err.msg


@pytest.mark.parametrize("after", ['"x"', "(", "end", "[1]"])
def test_call_dot_must_be_followed_by_a_name(after):
    err = parse_error(f"x = 1\nreturn CALL.{after}\n")
    assert err.lineno == 2
    assert "expected a function name after 'CALL.'" in err.msg


def test_call_dot_at_end_of_file_is_an_error():
    err = parse_error("return CALL.")
    assert err.lineno == 1
    assert "expected a function name after 'CALL.'" in err.msg
    assert "<eof>" in err.msg


# --- blocks: a section closes only what it opened ------------------------------


@pytest.mark.parametrize(
    ("text", "line", "word", "where"),
    [
        ("x = 1\nend do\n", 2, "end", "the script"),
        ("do end\nend do\n--@function f\nreturn 1\n", 2, "end", "the prelude"),
        ("--@function f\n-- doc\nreturn 1 end do\n", 3, "end", "function 'f'"),
        ("--@function f\nreturn 1\n--@function g\nrepeat until x until y\n", 4, "until", "function 'g'"),
        ("--@function f\nif x then return 1 end end\nlocal function h() end\n", 2, "end", "function 'f'"),
    ],
)
def test_closing_a_block_the_section_did_not_open_is_an_error(text, line, word, where):
    # the linker's own 'end' would close what the section opened after: 'end do' in a body made a
    # script that compiled though the section is not Lua (found by tests/test_fuzz.py)
    err = parse_error(text)
    assert err.lineno == line
    assert err.msg.startswith(f"'{word}' closes no block opened in {where}")


def test_every_kind_of_block_may_open_and_close_in_a_section():
    body = (
        "while x do end for i = 1, 2 do end for k in pairs(t) do end do end\n"
        "if x then elseif y then else end repeat until x\n"
        "local function f() end local g = function() end function t.m() end\n"
        "return 'end' -- end end until\n"
    )
    unit = parse_text(f"{body}--@function f\n{body}")
    assert list(unit.functions) == ["f"]


def test_unclosed_blocks_are_left_to_the_compiler():
    # a block left open cannot escape the section: the linker's 'end' closes it, and the script
    # then lacks one 'end', which Lua reports
    unit = parse_text("--@function f\nif x then\n")
    assert list(unit.functions) == ["f"]


# --- --@globals ----------------------------------------------------------------


def test_globals_in_a_function_head_the_module_head_and_a_markerless_file():
    unit = parse_text(
        "-- Module doc.\n--@globals os, server\n-- More doc.\nlocal t = os.clock()\n\n"
        "--@function f\n-- f's doc.\n--@globals extra\nreturn extra\n"
    )
    assert unit.globals == ("os", "server")
    assert unit.prelude.globals == ("os", "server")
    assert unit.doc == "Module doc.\nMore doc."
    assert unit.functions["f"].globals == ("extra",)
    assert unit.functions["f"].doc == "f's doc."
    single = parse_text("-- Doc.\n--@globals os\nreturn os.clock()\n")
    assert single.script is not None
    assert single.script.globals == ("os",)
    assert single.doc == "Doc."


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("--@globals\nreturn 1\n", 1, "--@globals needs at least one name"),
        ("--@globals a a\n--@function f\nreturn 1\n", 1, "--@globals: 'a' is given twice"),
        ("--@globals end\nreturn 1\n", 1, "--@globals: 'end' is not a Lua name"),
        ("--@globals a.b\nreturn 1\n", 1, "--@globals: 'a.b' is not a Lua name"),
        ("--@globals a\n--@globals b\n--@function f\nreturn 1\n", 2, "--@globals given twice"),
        ("--@function f\n--@globals a\n--@globals b\nreturn 1\n", 3, "--@globals given twice for 'f'"),
        ("--@function f\nreturn 1\n--@globals x\n", 3, "line, or in the module's leading comment"),
        ("local x = 1\n--@globals x\n--@function f\nreturn 1\n", 2, "--@globals must come right after"),
        ("-- doc\n--@keys a\n--@function f\nreturn 1\n", 2, "--@keys must come right after a '--@function'"),
    ],
)
def test_globals_directive_errors(text, line, message):
    err = parse_error(text)
    assert err.lineno == line
    assert message in err.msg
