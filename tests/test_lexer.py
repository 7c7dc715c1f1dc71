"""Stage 0 and 1: decoding a ``.lua`` file and lexing it as Lua 5.1 does.

No server is needed: these tests only call ``_source.decode`` and
``_lexer.tokenize`` / ``_lexer.string_value``.
"""

from __future__ import annotations

import lupa.lua51
import pytest

from luaimport._errors import LuaSyntaxError
from luaimport._lexer import (
    COMMENT,
    KEYWORD,
    NAME,
    NUMBER,
    OP,
    STRING,
    string_value,
    tokenize,
)
from luaimport._source import decode

FILENAME = "mod.lua"


def src(text: str | bytes):
    return decode(text, "mod", FILENAME)


def lex(text: str | bytes) -> list[tuple[str, str, int]]:
    """(kind, text, line) of every token."""
    return [(t.kind, t.text, t.line) for t in tokenize(src(text))]


def lex_error(text: str | bytes) -> LuaSyntaxError:
    with pytest.raises(LuaSyntaxError) as info:
        tokenize(src(text))
    return info.value


def only_string(text: str) -> str:
    """The value of the single string token in ``x = <text>``."""
    tokens = tokenize(src(f"x = {text}"))
    assert [t.kind for t in tokens] == [NAME, OP, STRING]
    return string_value(tokens[2])


# --- stage 0: decode ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"a\r\nb\r\nc", b"a\rb\rc", b"a\n\rb\n\rc", b"a\nb\nc", b"a\r\nb\rc"],
    ids=["crlf", "cr", "lfcr", "lf", "mixed"],
)
def test_decode_normalises_every_lua_line_ending_to_one_newline(raw):
    source = src(raw)
    assert source.text == "a\nb\nc"
    assert source.lines == ["a", "b", "c"]


def test_decode_counts_crlf_followed_by_cr_as_two_line_breaks():
    assert src(b"a\r\n\rb").text == "a\n\nb"


def test_decode_normalises_str_input_too():
    assert src("x\r\ny\rz").text == "x\ny\nz"


def test_decode_keeps_form_feed_and_vertical_tab():
    source = src("a\f\vb\nc")
    assert source.text == "a\f\vb\nc"
    assert source.lines == ["a\f\vb", "c"]


def test_decode_strips_utf8_bom_from_bytes():
    source = src(b"\xef\xbb\xbfx = 1\n")
    assert source.text == "x = 1\n"
    assert tokenize(source)[0].start == 0


def test_decode_strips_bom_from_str():
    assert src("\ufeffreturn 1").text == "return 1"


def test_decode_non_utf8_byte_is_reported_at_its_line():
    err = lex_error(b"local a = 1\r\nlocal b = 2\rlocal c = '\xff'\n")
    assert isinstance(err, SyntaxError)
    assert err.filename == FILENAME
    assert err.lineno == 3
    assert "0xff" in err.msg
    assert "not UTF-8" in err.msg
    assert err.text.startswith("local c = '")


def test_decode_non_utf8_byte_on_first_line():
    with pytest.raises(LuaSyntaxError) as info:
        src(b"\xc3(")
    assert info.value.lineno == 1
    assert "0xc3" in info.value.msg


# --- token kinds -------------------------------------------------------------


def test_every_token_kind_with_text_and_line():
    text = "local x = 10 -- note\nif x ~= 'a' then\n  return x .. [[b]]\nend\n"
    assert lex(text) == [
        (KEYWORD, "local", 1),
        (NAME, "x", 1),
        (OP, "=", 1),
        (NUMBER, "10", 1),
        (COMMENT, "-- note", 1),
        (KEYWORD, "if", 2),
        (NAME, "x", 2),
        (OP, "~=", 2),
        (STRING, "'a'", 2),
        (KEYWORD, "then", 2),
        (KEYWORD, "return", 3),
        (NAME, "x", 3),
        (OP, "..", 3),
        (STRING, "[[b]]", 3),
        (KEYWORD, "end", 4),
    ]


def test_token_start_end_are_offsets_in_source_text():
    source = src("  foo = 'bar'\nbaz")
    tokens = tokenize(source)
    assert [(t.start, t.end) for t in tokens] == [(2, 5), (6, 7), (8, 13), (14, 17)]
    for t in tokens:
        assert source.text[t.start : t.end] == t.text


LUA_KEYWORDS = [
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
]  # fmt: skip


def test_lua_keywords_are_keyword_tokens():
    assert lex(" ".join(LUA_KEYWORDS)) == [(KEYWORD, word, 1) for word in LUA_KEYWORDS]


def test_non_keywords_are_names():
    words = ["goto", "self", "End", "_", "_x1", "CALL", "nil_", "local2"]
    assert lex(" ".join(words)) == [(NAME, word, 1) for word in words]


def test_operators_longest_match_first():
    assert [t for _, t, _ in lex("a...b..c==d~=e<=f>=g")] == [
        "a", "...", "b", "..", "c", "==", "d", "~=", "e", "<=", "f", ">=", "g",
    ]  # fmt: skip


def test_single_character_operators():
    ops = list("+-*/%^#=<>(){}[];:,.~")
    tokens = lex(" ".join(f"a {op}" for op in ops))
    assert [t for _, t, _ in tokens if t != "a"] == ops
    assert all(kind == OP for kind, t, _ in tokens if t != "a")


def test_indexing_bracket_is_an_operator_not_a_long_string():
    assert lex("t[1]") == [(NAME, "t", 1), (OP, "[", 1), (NUMBER, "1", 1), (OP, "]", 1)]


# --- numbers -----------------------------------------------------------------


@pytest.mark.parametrize("number", ["3", "3.0", ".5", "3.", "1e10", "5e-3", "2E+8", "0x1F", "0Xff"])
def test_numbers(number):
    assert lex(f"x = {number}") == [(NAME, "x", 1), (OP, "=", 1), (NUMBER, number, 1)]


def test_concat_after_dot_dot_is_not_a_number():
    assert [k for k, _, _ in lex("a..5")] == [NAME, OP, NUMBER]


@pytest.mark.parametrize("bad", ["3x", "1e", "1e+", "0x", "1..2", "3.4.5", "12abc"])
def test_malformed_number_is_an_error(bad):
    err = lex_error(f"local a = 1\nlocal b = {bad}\n")
    assert err.lineno == 2
    assert err.msg == f"malformed number near '{bad}'"
    assert err.text == f"local b = {bad}"
    assert err.filename == FILENAME


# Lua 5.1 reads a numeral as llex.c read_numeral scans it and C strtod (glibc) parses it; lupa's
# Lua 5.1 is built the same way, and agreed with Redis 6.2 and Valkey 9 on every case below.
_lua51 = lupa.lua51.LuaRuntime()
_lua_return = _lua51.eval(
    "function(s) local f, err = loadstring('return ' .. s, '=x') "
    "if f then return f(), nil end return nil, err end"
)


def lua_value(numeral: str) -> object:
    value, err = _lua_return(numeral)
    assert err is None, err
    return value


def lua_error(numeral: str) -> str:
    value, err = _lua_return(numeral)
    assert err is not None, f"Lua 5.1 read {numeral} as {value}"
    return str(err).removeprefix("x:1: ")


@pytest.mark.parametrize(("number", "value"), [("0x1p4", 16), ("0X1P4", 16), ("0xABCp10", 2813952)])
def test_hex_numeral_with_binary_exponent_is_a_number(number, value):
    assert lex(f"x = {number}") == [(NAME, "x", 1), (OP, "=", 1), (NUMBER, number, 1)]
    assert lua_value(number) == value


def test_e_in_a_hex_numeral_is_a_digit_not_an_exponent():
    # 0xep1 is 14 * 2: the 'p' after the hex digit 'e' is the exponent
    assert lex("x = 0xep1") == [(NAME, "x", 1), (OP, "=", 1), (NUMBER, "0xep1", 1)]
    assert lua_value("0xep1") == 28


def test_sign_after_hex_e_ends_the_numeral():
    # llex takes a sign only right after an 'E' that follows the leading digits, never in a hex numeral
    assert lex("x = 0x1e+1")[2:] == [(NUMBER, "0x1e", 1), (OP, "+", 1), (NUMBER, "1", 1)]
    assert lua_value("0x1e+1") == 31


@pytest.mark.parametrize("bad", ["0x1p-4", "0x1p+4"])
def test_signed_binary_exponent_is_malformed_at_the_p(bad):
    assert lex_error(f"x = {bad}").msg == "malformed number near '0x1p'" == lua_error(bad)


@pytest.mark.parametrize("bad", ["0x1p", "0x1pA", "0x1p4p4", "0x1p4_", "0xp1"])
def test_binary_exponent_needs_decimal_digits_and_ends_the_numeral(bad):
    assert lex_error(f"x = {bad}").msg == f"malformed number near '{bad}'" == lua_error(bad)


def test_hex_fraction_ends_the_numeral_at_the_dot():
    # strtod would read 0x1.8p3, but llex never hands it the '.': 0x1 is a number, .8p3 is malformed
    assert lex_error("x = 0x1.8p3").msg == "malformed number near '.8p3'" == lua_error("0x1.8p3")
    assert [t.text for t in tokenize(src("x = 0x1 .. y"))] == ["x", "=", "0x1", "..", "y"]


@pytest.mark.parametrize("bad", ["0X.8P1", "0x.8", "0x.p1"])
def test_hex_prefix_followed_by_a_dot_is_malformed(bad):
    assert lex_error(f"x = {bad}").msg == f"malformed number near '{bad[:2]}'" == lua_error(bad)


@pytest.mark.parametrize("bad", ["00x1", "0.x1", "1x", "0b101"])
def test_hex_prefix_must_be_exactly_0x(bad):
    assert lex_error(f"x = {bad}").msg == f"malformed number near '{bad}'" == lua_error(bad)


@pytest.mark.parametrize("name", ["inf", "nan", "infinity", "NAN"])
def test_strtod_words_are_names_not_numerals(name):
    # strtod reads them, but a numeral starts with a digit or a '.' and a digit
    assert lex(f"x = {name}") == [(NAME, "x", 1), (OP, "=", 1), (NAME, name, 1)]


@pytest.mark.parametrize(("number", "value"), [("0x1p99999", float("inf")), ("1e99999", float("inf"))])
def test_overflowing_numerals_are_numbers(number, value):
    assert lex(f"x = {number}")[2] == (NUMBER, number, 1)
    assert lua_value(number) == value


@pytest.mark.parametrize(
    "numeral",
    [
        "0", "08", "1e5", "1E-5", "1.e5", ".5e3", "5.", ".5", "0x10", "0xffffffffffffffffff",
        "0x1p4", "0xep1", "0e0", "0E+0",
        "3..2", "5..", "1.5.", "1.5e", "1e5x", "1_", "0x1_", "0x", "0x1p", "0x1pA",
    ],
)  # fmt: skip
def test_numeral_verdict_agrees_with_lua51(numeral):
    _, err = _lua_return(numeral)
    try:
        tokens = lex(f"x = {numeral}")
    except LuaSyntaxError as exc:
        assert err is not None and str(err).endswith(exc.msg)
    else:
        assert tokens[2:] == [(NUMBER, numeral, 1)]
        assert err is None


# --- short strings -----------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r'"plain"', "plain"),
        (r"'single'", "single"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'it\'s'", "it's"),
        (r'"a\\b"', "a\\b"),
        (r'"tab\tnl\n"', "tab\tnl\n"),
        (r'"\a\b\f\r\v"', "\a\b\f\r\v"),
        (r'"\065\66\0677"', "ABC7"),
        (r'"\0"', "\0"),
        (r'"\255"', "\xff"),
        (r'"\q"', "q"),
        ("'it \"quoted\"'", 'it "quoted"'),
        ('"--@function f"', "--@function f"),
    ],
)
def test_short_string_value(literal, value):
    assert only_string(literal) == value


def test_escaped_real_newline_continues_a_short_string():
    tokens = tokenize(src('x = "a\\\nb" y'))
    assert tokens[2].text == '"a\\\nb"'
    assert tokens[2].line == 1
    assert string_value(tokens[2]) == "a\nb"
    assert (tokens[3].text, tokens[3].line) == ("y", 2)


def test_string_value_decimal_escape_stops_at_non_ascii_digit():
    # Lua reads at most three ASCII digits; the superscript two is just text.
    assert only_string('"\\1\u00b2"') == "\x01\u00b2"


def test_decimal_escape_above_255_is_an_error():
    err = lex_error('x = 1\ny = "\\256"\n')
    assert err.lineno == 2
    assert "escape sequence too large" in err.msg
    assert err.text == 'y = "\\256"'


def test_unfinished_short_string_at_end_of_file():
    err = lex_error("x = 1\ny = 'abc")
    assert err.lineno == 2
    assert err.msg == "unfinished string"
    assert err.text == "y = 'abc"


def test_raw_newline_in_short_string_is_an_error_at_its_start_line():
    err = lex_error('x = 1\ny = "abc\nz = 2"\n')
    assert err.lineno == 2
    assert err.msg == "unfinished string"


def test_unfinished_string_after_escaped_newline_reports_start_line():
    err = lex_error('\ny = "a\\\nb\n')
    assert err.lineno == 2
    assert err.msg == "unfinished string"


def test_backslash_at_end_of_file_is_unfinished_string():
    err = lex_error('y = "abc\\')
    assert err.lineno == 1
    assert err.msg == "unfinished string"


def test_escaped_quote_before_end_of_file_does_not_close():
    err = lex_error('y = "abc\\"')
    assert err.msg == "unfinished string"


# --- long strings ------------------------------------------------------------


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_long_string_of_each_level(level):
    eq = "=" * level
    literal = f"[{eq}[a ] ]] b]{eq}]" if level else "[[a ] b]]"
    tokens = tokenize(src(f"x = {literal} y"))
    assert [(t.kind, t.text) for t in tokens] == [(NAME, "x"), (OP, "="), (STRING, literal), (NAME, "y")]
    assert string_value(tokens[2]) == (literal[level + 2 : -level - 2])


def test_double_close_bracket_does_not_close_level_one_string():
    tokens = tokenize(src("x = [=[a]]b]==]c]=]"))
    assert tokens[2].text == "[=[a]]b]==]c]=]"
    assert string_value(tokens[2]) == "a]]b]==]c"


def test_level_one_string_may_contain_double_open_bracket():
    tokens = tokenize(src("x = [=[ a [[ b ]] ]=]"))
    assert len(tokens) == 3
    assert string_value(tokens[2]) == " a [[ b ]] "


def test_long_string_skips_first_newline_only():
    tokens = tokenize(src("x = [[\n\nabc\n]]"))
    assert string_value(tokens[2]) == "\nabc\n"


def test_long_string_keeps_escapes_verbatim():
    tokens = tokenize(src(r"x = [==[a\n\"b]==]"))
    assert string_value(tokens[2]) == r"a\n\"b"


def test_multiline_long_string_advances_line_of_next_token():
    tokens = tokenize(src("x = [==[a\nb\nc]==] y\nz"))
    assert tokens[2].line == 1
    assert tokens[2].end_line == 3
    assert [(t.text, t.line) for t in tokens[3:]] == [("y", 3), ("z", 4)]


def test_long_string_with_crlf_counts_lines_once():
    tokens = tokenize(src(b"x = [[a\r\nb\r\n]]\r\ny"))
    assert string_value(tokens[2]) == "a\nb\n"
    assert (tokens[3].text, tokens[3].line) == ("y", 4)


def test_nested_double_brackets_in_level_zero_string_is_an_error():
    err = lex_error("x = 1\ny = [[a\nb [[ c]]\n")
    assert "nesting of [[...]] is deprecated" in err.msg
    assert err.lineno == 3
    assert err.text == "b [[ c]]"


def test_unfinished_long_string_reports_opening_line():
    err = lex_error("x = 1\ny = [==[abc\n]=]\n]]\n")
    assert err.lineno == 2
    assert "unfinished long string" in err.msg
    assert err.text == "y = [==[abc"


def test_open_bracket_equals_without_second_bracket_is_an_error():
    err = lex_error("x = 1\ny = [==a]==]\n")
    assert err.lineno == 2
    assert "invalid long string delimiter" in err.msg
    assert err.text == "y = [==a]==]"


# --- comments ----------------------------------------------------------------


def test_short_comment_runs_to_end_of_line():
    assert lex("-- one 'two' [[three\nx") == [(COMMENT, "-- one 'two' [[three", 1), (NAME, "x", 2)]


def test_short_comment_at_end_of_file_without_newline():
    assert lex("x -- tail") == [(NAME, "x", 1), (COMMENT, "-- tail", 1)]


@pytest.mark.parametrize("level", [0, 1, 2])
def test_long_comment_spans_lines(level):
    eq = "=" * level
    comment = f"--[{eq}[ a\n --@function f\nb ]{eq}]"
    tokens = tokenize(src(f"x {comment} y\nz"))
    assert [(t.kind, t.text, t.line) for t in tokens] == [
        (NAME, "x", 1),
        (COMMENT, comment, 1),
        (NAME, "y", 3),
        (NAME, "z", 4),
    ]
    assert tokens[1].is_long


def test_level_one_comment_is_not_closed_by_double_bracket():
    assert lex("--[=[ a ]] b ]=] x") == [(COMMENT, "--[=[ a ]] b ]=]", 1), (NAME, "x", 1)]


def test_dashes_bracket_equals_without_second_bracket_is_a_short_comment():
    tokens = tokenize(src("--[==x ]==]\ny"))
    assert [(t.kind, t.text, t.line) for t in tokens] == [(COMMENT, "--[==x ]==]", 1), (NAME, "y", 2)]
    assert not tokens[0].is_long


def test_three_dashes_then_brackets_is_a_short_comment():
    # the ---[[ ... --]] toggle idiom: both lines are short comments
    assert lex("---[[ off\ny = 1\n--]]") == [
        (COMMENT, "---[[ off", 1),
        (NAME, "y", 2),
        (OP, "=", 2),
        (NUMBER, "1", 2),
        (COMMENT, "--]]", 3),
    ]


def test_nested_double_brackets_in_level_zero_comment_is_an_error():
    err = lex_error("--[[ a\n[[ b ]]")
    assert "nesting of [[...]] is deprecated" in err.msg
    assert err.lineno == 2


def test_unfinished_long_comment_reports_opening_line():
    err = lex_error("x = 1\n\n--[=[ never\nclosed ]]\n")
    assert err.lineno == 3
    assert "unfinished long comment" in err.msg
    assert err.text == "--[=[ never"


# --- line endings and whitespace ----------------------------------------------


@pytest.mark.parametrize("newline", [b"\n", b"\r", b"\r\n", b"\n\r"], ids=["lf", "cr", "crlf", "lfcr"])
def test_each_line_ending_counts_as_one_line(newline):
    raw = newline.join([b"a", b"b", b"", b"c"])
    assert lex(raw) == [(NAME, "a", 1), (NAME, "b", 2), (NAME, "c", 4)]


def test_form_feed_and_vertical_tab_are_whitespace_not_line_breaks():
    assert lex("a\fb\vc\t d\ne") == [
        (NAME, "a", 1),
        (NAME, "b", 1),
        (NAME, "c", 1),
        (NAME, "d", 1),
        (NAME, "e", 2),
    ]


def test_empty_source_has_no_tokens():
    assert tokenize(src("")) == []
    assert tokenize(src(" \t\n\n")) == []
