"""A corpus of malformed (and tricky but valid) .lua modules, imported through the hook.

Each input is a real file in ``tests/fixtures/corpus/`` (a namespace package, so
``corpus/x.lua`` is the module ``corpus.x``).  The byte-level ones (CRLF, lone CR,
``\\n\\r``, a UTF-8 BOM, bytes that are not UTF-8) hold those exact bytes.  Every
error case states where the problem is, as the README's format and CALL rules
say: the exception class, the file, the line, and a piece of the message.  For
an unfinished string or long bracket the line is where the token starts.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from luaimport import LuaLinkError, LuaModule, LuaSyntaxError

pytestmark = pytest.mark.usefixtures("import_state")

CORPUS = Path(__file__).parent / "fixtures" / "corpus"

S = LuaSyntaxError
L = LuaLinkError

#: (case, exception class, line of the problem, a piece of the message)
ERRORS: list[tuple[str, type[Exception], int, str]] = [
    # -- marker shapes and names
    ("fmt_marker_no_name", S, 5, "malformed marker '--@function'"),
    ("fmt_marker_two_names", S, 3, "malformed marker '--@function first second'"),
    ("fmt_marker_trailing_text", S, 4, "malformed marker"),
    ("fmt_name_dash", S, 3, "'get-value' is not an identifier"),
    ("fmt_name_lua_keyword", S, 2, "'end' is a Lua keyword"),
    ("fmt_name_python_class", S, 3, "'class' is a Python keyword"),
    ("fmt_name_python_pass", S, 4, "'pass' is a Python keyword"),
    ("fmt_name_leading_underscore", S, 4, "'_helper' starts with '_'"),
    ("fmt_name_digit_start", S, 1, "'2fast' is not an identifier"),
    ("fmt_name_non_ascii", S, 2, "'café' is not an identifier"),
    ("fmt_duplicate_function", S, 8, "duplicate function 'get' (first defined at line 2)"),
    ("fmt_duplicate_indented", S, 5, "duplicate function 'a' (first defined at line 1)"),
    ("fmt_marker_no_space", S, 4, "unknown directive --@functionbad"),
    ("fmt_marker_space_after_at", S, 2, "malformed directive '--@ function f'"),
    # -- directives
    ("dir_unknown_after_marker", S, 4, "unknown directive --@readnoly"),
    ("dir_unknown_after_marker_doc", S, 3, "unknown directive --@arg"),
    ("dir_unknown_indented", S, 3, "unknown directive --@kyes"),
    ("dir_misplaced_in_prelude", S, 3, "directive --@keys must come right after a '--@function' line"),
    ("dir_misplaced_mid_body", S, 4, "directive --@args must come right after a '--@function' line"),
    ("dir_misplaced_markerless", S, 3, "directive --@flags must come right after a '--@function' line"),
    ("dir_misplaced_in_body", S, 7, "directive --@readonly must come right after"),
    ("dir_unknown_flag", S, 4, "unknown script flag 'no-replicas' in --@flags (known: allow-cross-slot-keys"),
    ("dir_flag_twice_markerless", S, 3, "script flag 'allow-oom' given twice"),
    ("dir_twice", S, 4, "directive --@keys given twice for 'f' (first at line 2)"),
    ("dir_name_in_keys_and_args", S, 3, "--@args: 'src' is declared twice"),
    ("dir_variadic_not_last", S, 3, "--@args: only the last name can take a list ('rest...')"),
    ("dir_required_after_optional", S, 2, "--@args: required name 'count' after an optional one"),
    ("dir_reserved_name", S, 2, "--@keys: 'client' is reserved"),
    ("dir_python_keyword_name", S, 3, "--@args: 'class' is a Python keyword"),
    ("dir_readonly_with_text", S, 2, "--@readonly takes nothing after it, found 'please'"),
    # -- CALL written wrong
    ("call_bare_local", S, 2, "bare CALL"),
    ("call_bare_paren", S, 5, "bare CALL"),
    ("call_bare_return", S, 3, "bare CALL"),
    ("call_bare_assign", S, 4, "bare CALL"),
    ("call_bare_method", S, 4, "bare CALL"),
    ("call_bare_in_prelude", S, 2, "bare CALL"),
    ("call_bare_eof", S, 2, "bare CALL"),
    ("call_index_variable", S, 3, "CALL[...] takes one string literal"),
    ("call_index_number", S, 2, "CALL[...] takes one string literal"),
    ("call_index_expression", S, 4, "CALL[...] takes one string literal"),
    ("call_index_not_a_name", S, 3, "'not a name' is not a dotted function name"),
    ("call_dot_number", S, 2, "after 'CALL.', found '5'"),
    ("call_dot_keyword", S, 3, "after 'CALL.', found 'return'"),
    ("call_dot_eof", S, 3, "after 'CALL.', found '<eof>'"),
    # -- CALL naming no function
    ("link_unknown_same_module", L, 6, "CALL target 'c': no function of that name"),
    ("link_unknown_in_prelude", L, 2, "CALL target 'missing': no function of that name"),
    ("link_unknown_multiline_ref", L, 2, "CALL target 'nope'"),
    ("link_unknown_other_function", L, 3, "lipkg.basic has no function 'nope'"),
    ("link_unknown_by_string", L, 2, "lipkg.basic has no function 'nope'"),
    ("link_unknown_module", L, 3, "no module named 'nosuchpkg.mod'"),
    ("link_python_module", L, 5, "lipkg.shadowed is not a Lua module"),
    ("link_markerless_single_name", L, 3, "the file has no --@function sections"),
    ("link_markerless_module_function", L, 2, "lipkg.single has no function 'incr'"),
    ("link_after_long_string", L, 6, "CALL target 'nope'"),
    # -- lexical
    ("lex_unfinished_single_quote", S, 3, "unfinished string"),
    ("lex_unfinished_double_quote_eof", S, 2, "unfinished string"),
    ("lex_string_raw_newline", S, 2, "unfinished string"),
    ("lex_unfinished_after_continuation", S, 2, "unfinished string"),
    ("lex_escape_too_large", S, 3, "escape sequence too large"),
    ("lex_escape_too_large_continued", S, 3, "escape sequence too large"),
    ("lex_unfinished_long_string_level0", S, 3, "unfinished long string: no closing ]]"),
    ("lex_unfinished_long_string_level2", S, 4, "unfinished long string: no closing ]==]"),
    ("lex_long_level_mismatch", S, 2, "unfinished long string: no closing ]==]"),
    ("lex_long_level_mismatch_higher", S, 3, "unfinished long string: no closing ]=]"),
    ("lex_unfinished_long_comment", S, 2, "unfinished long comment: no closing ]]"),
    ("lex_unfinished_long_comment_level1", S, 3, "unfinished long comment: no closing ]=]"),
    ("lex_nested_long_string", S, 4, "nesting of [[...]] is deprecated"),
    ("lex_nested_long_comment", S, 3, "nesting of [[...]] is deprecated"),
    ("lex_invalid_long_delimiter", S, 3, "invalid long string delimiter"),
    ("lex_malformed_number_3x", S, 2, "malformed number near '3x'"),
    ("lex_malformed_number_0x", S, 3, "malformed number near '0x'"),
    ("lex_malformed_number_1e", S, 4, "malformed number near '1e'"),
    ("lex_malformed_number_dots", S, 2, "malformed number near '1.2.3'"),
    ("lex_shebang", S, 1, "a '#' first line is not Lua"),
    # -- lines counted across multi-line tokens
    ("line_error_after_long_comment", S, 6, "bare CALL"),
    ("line_error_after_continued_string", S, 5, "malformed number near '0x'"),
    ("line_error_after_long_string_same_line", S, 4, "malformed number near '9z'"),
    # -- encodings
    ("bytes_non_utf8_line3", S, 3, "byte 0xff is not UTF-8"),
    ("bytes_non_utf8_truncated_sequence", S, 2, "byte 0xe2 is not UTF-8"),
    ("bytes_non_utf8_in_long_string", S, 4, "byte 0xc0 is not UTF-8"),
    ("bytes_non_utf8_crlf_line4", S, 4, "byte 0xe9 is not UTF-8"),
    ("bytes_non_utf8_lone_cr_line3", S, 3, "byte 0x80 is not UTF-8"),
    ("bytes_bom_bad_marker", S, 3, "'9' is not an identifier"),
    ("bytes_bom_shebang", S, 1, "a '#' first line is not Lua"),
    # -- line ends: \r\n, \r and \n\r are one line each
    ("line_crlf_bad_marker", S, 4, "'bad-name' is not an identifier"),
    ("line_crlf_unknown_call", L, 6, "CALL target 'h'"),
    ("line_crlf_long_string_then_error", S, 6, "malformed number near '3x'"),
    ("line_crlf_unfinished_long_comment", S, 3, "unfinished long comment"),
    ("line_lone_cr_duplicate", S, 5, "duplicate function 'f' (first defined at line 1)"),
    ("line_lone_cr_unfinished_long_string", S, 3, "unfinished long string"),
    ("line_lone_cr_bare_call", S, 5, "bare CALL"),
    ("line_lf_cr_unknown_directive", S, 3, "unknown directive --@argz"),
    ("line_mixed_endings", S, 6, "bare CALL"),
]

#: Inputs that look suspicious but are valid; each has its own test below.
ACCEPTED = [
    "ok_empty",
    "ok_whitespace_only",
    "ok_markers_in_strings",
    "ok_crlf",
    "ok_lone_cr",
    "ok_bom",
    "ok_emmylua",
    "ok_call_text_ignored",
    "ok_comment_bracket_equals",
]


def _lua_modules() -> set[str]:
    return {name for name, module in list(sys.modules.items()) if isinstance(module, LuaModule)}


def _import(case: str) -> LuaModule:
    module = importlib.import_module(f"corpus.{case}")
    assert isinstance(module, LuaModule)
    assert module.__file__ == str(CORPUS / f"{case}.lua")
    return module


def test_corpus_is_complete() -> None:
    names = [case for case, *_ in ERRORS] + ACCEPTED
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(p.stem for p in CORPUS.glob("*.lua"))
    assert not (CORPUS / "__init__.py").exists()
    assert len(ERRORS) >= 40


def test_byte_level_files_hold_their_bytes() -> None:
    def data(case: str) -> bytes:
        return (CORPUS / f"{case}.lua").read_bytes()

    for case in ("line_crlf_bad_marker", "line_crlf_unknown_call", "ok_crlf", "bytes_non_utf8_crlf_line4"):
        assert data(case).count(b"\r\n") == data(case).count(b"\n") > 3
    for case in ("line_lone_cr_duplicate", "ok_lone_cr", "bytes_non_utf8_lone_cr_line3"):
        assert b"\n" not in data(case) and data(case).count(b"\r") > 3
    assert data("line_lf_cr_unknown_directive").count(b"\n\r") == 4
    for case in ("ok_bom", "bytes_bom_bad_marker", "bytes_bom_shebang"):
        assert data(case).startswith(b"\xef\xbb\xbf")
    assert data("ok_empty") == b""


@pytest.mark.parametrize(("case", "kind", "lineno", "fragment"), ERRORS, ids=[c[0] for c in ERRORS])
def test_malformed(case: str, kind: type[Exception], lineno: int, fragment: str) -> None:
    name = f"corpus.{case}"
    before = _lua_modules()
    with pytest.raises(kind) as info:
        importlib.import_module(name)
    exc = info.value
    assert type(exc) is kind
    filename = getattr(exc, "filename", None)
    assert isinstance(filename, str)
    assert filename.endswith(f"corpus/{case}.lua")
    assert Path(filename) == CORPUS / f"{case}.lua"
    assert getattr(exc, "lineno", None) == lineno
    assert fragment in str(exc)
    # A failed import leaves nothing behind: neither the module nor Lua modules it imported.
    assert name not in sys.modules
    assert _lua_modules() == before


@pytest.mark.parametrize("case", ["ok_empty", "ok_whitespace_only"])
def test_empty_files_are_marker_less_modules(case: str) -> None:
    module = _import(case)
    assert module.__all__ == []
    assert module.__doc__ is None
    assert isinstance(module.script, str)
    assert callable(module)


def test_markers_inside_strings_and_comments_are_not_markers() -> None:
    module = _import("ok_markers_in_strings")
    assert module.__all__ == ["real", "other"]
    assert module.__doc__ == "Markers that are not markers."
    assert "--@function in_long_string" in module.real.script
    assert "--@function nested_in_body" in module.other.script


@pytest.mark.parametrize("case", ["ok_crlf", "ok_lone_cr"])
def test_crlf_and_lone_cr_files(case: str) -> None:
    module = _import(case)
    assert module.__all__ == ["first", "second"]
    assert module.__doc__ == "Module doc."
    assert module.first.__doc__ == "Doc of first."
    # the marker lines, counted with each line end as one line
    assert module.first.lineno == 3
    assert module.second.lineno == 10
    assert "\r" not in module.second.script
    assert "local s = [[\na\nb]]" in module.second.script


def test_bom_is_dropped() -> None:
    module = _import("ok_bom")
    assert module.__all__ == ["f"]
    assert module.__doc__ == "Doc."
    assert module.f.lineno == 2
    assert "\ufeff" not in module.f.script


def test_emmylua_comments_are_ordinary_comments() -> None:
    module = _import("ok_emmylua")
    assert module.__all__ == ["add"]
    assert module.add.__doc__ is not None
    assert module.add.__doc__.startswith("Add one.")


def test_call_text_in_strings_comments_and_fields_is_ignored() -> None:
    module = _import("ok_call_text_ignored")
    assert module.__all__ == []
    assert "return {obj.CALL(), obj:CALL(), s}" in module.script
    assert 'local s = "CALL.nope CALL("' in module.script


def test_bracket_equals_opens_a_short_comment() -> None:
    module = _import("ok_comment_bracket_equals")
    assert module.__all__ == ["f"]
    assert module.f.lineno == 2
