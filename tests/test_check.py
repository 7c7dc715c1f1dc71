"""luaimport.check(): compile errors found with lupa's Lua 5.1, no server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from _zips import make_zip

import luaimport
from luaimport import LuaLinkError, LuaSyntaxError

pytestmark = pytest.mark.usefixtures("import_state")

PKG = Path(__file__).parent / "fixtures" / "checkpkg"


def test_check_a_package_reports_each_error_once_at_its_line() -> None:
    import checkpkg

    problems = luaimport.check(checkpkg)
    found = sorted((type(p).__name__, Path(p.filename).name, p.lineno) for p in problems)  # type: ignore[union-attr]
    assert found == [
        ("LuaLinkError", "link_error.lua", 2),
        ("LuaSyntaxError", "broken.lua", 6),
        ("LuaSyntaxError", "deeper.lua", 5),
    ]
    broken = next(p for p in problems if isinstance(p, LuaSyntaxError) and p.filename.endswith("broken.lua"))
    assert broken.text == "end"
    assert "unexpected symbol near 'end'" in broken.msg
    assert "checkpkg.sub.link_error" not in sys.modules


def test_check_a_package_in_a_zip_archive_before_any_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_zip(PKG.parent, tmp_path / "fixtures.zip", directories=True)  # sub/ is a namespace
    monkeypatch.syspath_prepend(str(archive))
    import checkpkg

    assert checkpkg.__file__ == str(archive / "checkpkg" / "__init__.py")
    assert not [name for name in sys.modules if name.startswith("checkpkg.")]
    problems = luaimport.check(checkpkg)
    found = sorted((p.filename, p.lineno) for p in problems)  # type: ignore[union-attr]
    assert found == [
        (str(archive / "checkpkg" / "broken.lua"), 6),
        (str(archive / "checkpkg" / "sub" / "deeper.lua"), 5),
        (str(archive / "checkpkg" / "sub" / "link_error.lua"), 2),
    ]


def test_check_a_clean_package_in_a_zip_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(make_zip(PKG.parent / "zipsrc", tmp_path / "scripts.zip")))
    import zpkg

    assert luaimport.check(zpkg) == []


def test_check_a_clean_module_finds_nothing() -> None:
    import lipkg.basic

    assert luaimport.check(lipkg.basic) == []


def test_check_a_module_with_an_error() -> None:
    mod = luaimport.loads("--@function f\nlocal a = 1\nlocal = 2\n", "chk", "chk.lua")
    [problem] = luaimport.check(mod)
    assert isinstance(problem, LuaSyntaxError)
    assert (problem.filename, problem.lineno, problem.text) == ("chk.lua", 3, "local = 2")


def test_check_a_call_reference_split_over_lines_finds_nothing() -> None:
    mod = luaimport.loads("--@function f\nreturn 1\n--@function g\nreturn CALL\n.f({}, {})\n", "split")
    assert luaimport.check(mod) == []


def test_check_rejects_a_plain_module() -> None:
    import lipkg.shadowed

    with pytest.raises(TypeError, match="neither a Lua module nor a package"):
        luaimport.check(lipkg.shadowed)


def test_link_errors_are_import_errors() -> None:
    import checkpkg

    assert any(isinstance(p, LuaLinkError) and isinstance(p, ImportError) for p in luaimport.check(checkpkg))


def test_missing_lupa_is_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lupa", None)
    monkeypatch.setitem(sys.modules, "lupa.lua51", None)
    import lipkg.basic

    with pytest.raises(ImportError, match=r"pip install 'luaimport\[check\]'"):
        luaimport.check(lipkg.basic)


def test_a_call_reference_over_lines_compiles_before_its_parenthesis() -> None:
    text = "--@function a\nlocal n = CALL.\n  b({}, {})\n  + 1\nreturn n\n--@function b\nreturn 1\n"
    mod = luaimport.loads(text, "ml")
    assert luaimport.check(mod) == []
    assert mod.a.script.split("\n")[3:5] == ["local n = ", "CALL[2]({}, {})"]
