"""The import hook: finding, loading, reloading and failing to load .lua modules."""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import linecache
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _threads import run_in_threads
from _zips import make_zip

import luaimport
from luaimport import LuaLinkError, LuaModule, LuaSyntaxError

pytestmark = pytest.mark.usefixtures("import_state")

FIXTURES = Path(__file__).parent / "fixtures"


def test_import_luaimport_alone_changes_nothing() -> None:
    code = (
        "import sys; before = list(sys.meta_path); import luaimport; "
        "assert sys.meta_path == before, sys.meta_path; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_install_is_idempotent_and_uninstall_symmetric() -> None:
    luaimport.install()
    luaimport.install()
    assert sum(isinstance(f, luaimport._importer.LuaFinder) for f in sys.meta_path) == 1
    luaimport.uninstall()
    assert not luaimport.installed()
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("lipkg.basic")
    luaimport.uninstall()  # a second uninstall is harmless
    luaimport.install()
    assert importlib.import_module("lipkg.basic").__all__


def test_install_is_thread_safe() -> None:
    luaimport.uninstall()
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        luaimport.install()

    run_in_threads(race, 8)
    assert sum(isinstance(f, luaimport._importer.LuaFinder) for f in sys.meta_path) == 1


def test_finder_sits_before_path_finder() -> None:
    finders = [type(f).__name__ if not isinstance(f, type) else f.__name__ for f in sys.meta_path]
    assert finders.index("LuaFinder") == finders.index("PathFinder") - 1


def test_module_attributes() -> None:
    import lipkg.basic as basic

    assert isinstance(basic, LuaModule)
    assert basic.__file__ == str(FIXTURES / "lipkg" / "basic.lua")
    assert basic.__spec__.name == "lipkg.basic"
    assert basic.__loader__.get_filename("lipkg.basic") == basic.__file__
    assert basic.__all__ == [
        "return_args",
        "call_return",
        "types",
        "identity",
        "factorial",
        "value",
        "extras",
        "passthrough",
    ]
    assert (
        basic.__doc__ == "The lua_call README example, as a luaimport module.\nSecond line of the module doc."
    )
    assert basic.return_args.__doc__ == "Return ARGV unchanged."
    assert basic.return_args.__qualname__ == "lipkg.basic.return_args"
    assert basic.return_args.__module__ == "lipkg.basic"
    assert basic.identity.__doc__ is None


def test_get_source_returns_the_file_text() -> None:
    import lipkg.basic as basic

    assert basic.__loader__.get_source("lipkg.basic") == Path(basic.__file__).read_text()
    assert (
        importlib.util.find_spec("lipkg.basic").loader.get_source("lipkg.basic").startswith("-- The lua_call")
    )


def test_linecache_shows_lua_lines() -> None:
    import lipkg.basic as basic

    assert linecache.getline(basic.__file__, 6) == "return ARGV\n"


def test_toplevel_lua_file_on_sys_path() -> None:
    import toplevel_lua

    assert toplevel_lua.answer.__qualname__ == "toplevel_lua.answer"


def test_namespace_package() -> None:
    import lins.deep.nsmod as nsmod

    assert nsmod.hello.__qualname__ == "lins.deep.nsmod.hello"
    assert importlib.import_module("lins").__file__ is None


def test_py_module_wins_over_lua() -> None:
    import lipkg.shadowed as shadowed

    assert shadowed.ORIGIN == "py"
    assert not isinstance(shadowed, LuaModule)


def test_package_wins_over_lua() -> None:
    import lipkg.pkgwins as pkgwins

    assert pkgwins.ORIGIN == "package"


def test_lua_wins_over_namespace_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "nsclash").mkdir()
    (tmp_path / "nsclash.lua").write_text("--@function f\nreturn 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import nsclash

    assert isinstance(nsclash, LuaModule)


def test_missing_module_is_still_module_not_found() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("lipkg.does_not_exist")
    assert importlib.util.find_spec("lipkg.does_not_exist") is None


def test_find_spec_does_not_execute_the_module() -> None:
    spec = importlib.util.find_spec("lipkg.single")
    assert spec is not None and spec.origin.endswith("single.lua")
    assert "lipkg.single" not in sys.modules


def test_marker_less_module_is_callable_with_script_and_sha() -> None:
    import lipkg.single as single

    assert single.__all__ == []
    assert single.__doc__.startswith("A marker-less file")
    assert "redis.call('INCRBY', key, by)" in single.script
    assert len(single.sha) == 40
    assert callable(single)


def test_module_with_functions_is_not_callable() -> None:
    import lipkg.basic as basic

    with pytest.raises(TypeError, match=r"is not callable.*return_args"):
        basic(None, [], [])


def test_unknown_attribute_names_the_module() -> None:
    import lipkg.basic as basic

    with pytest.raises(AttributeError, match=r"lipkg\.basic.*nope"):
        basic.nope  # noqa: B018


def _make_zip(tmp_path: Path) -> Path:
    return make_zip(FIXTURES / "zipsrc", tmp_path / "scripts.zip")


def test_zip_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _make_zip(tmp_path)
    monkeypatch.syspath_prepend(str(archive))
    import zmarkerless
    import zpkg.zmod as zmod

    assert zmod.__file__ == str(archive / "zpkg" / "zmod.lua")
    assert zmod.__doc__ == "Imported from a zip archive."
    assert "return CALL[2]({}, ARGV)" in zmod.via_other.script
    assert zmod.__loader__.get_source("zpkg.zmod").startswith("-- Imported from a zip")
    assert linecache.getline(zmod.__file__, 3) == 'return "zipped " .. ARGV[1]\n'
    assert zmarkerless.__file__ == str(archive / "zmarkerless.lua")


def test_zip_import_of_modules_in_a_subpackage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _make_zip(tmp_path)
    monkeypatch.syspath_prepend(str(archive))
    import zpkg.zsub.zdeep as zdeep

    assert zdeep.__file__ == str(archive / "zpkg" / "zsub" / "zdeep.lua")
    assert 'return "zpkg.zsub.zdeep"' in zdeep.where.script


def test_iter_modules_lists_what_import_would_load_without_importing() -> None:
    import walkpkg

    found = list(luaimport.iter_modules(walkpkg))
    assert all(type(info) is luaimport.LuaModuleInfo for info in found)
    assert [info.name for info in found] == [
        "walkpkg.a",
        "walkpkg.both",  # both.lua wins over the namespace directory both/
        "walkpkg.nsdir.b",  # namespace subdirectories, at any depth
        "walkpkg.nsdir.deeper.c",
        "walkpkg.regular.d",  # a regular subpackage
    ]
    assert found[0].path == str(FIXTURES / "walkpkg" / "a.lua")
    assert not [name for name in sys.modules if name.startswith("walkpkg.")]  # nothing imported
    for info in found:
        module = importlib.import_module(info.name)
        assert isinstance(module, LuaModule)
        assert module.__file__ == info.path
    # what it leaves out, import does not load as Lua either
    assert not isinstance(importlib.import_module("walkpkg.py_wins"), LuaModule)
    assert not isinstance(importlib.import_module("walkpkg.py_wins_dir"), LuaModule)
    for hidden in ("walkpkg.both.hidden", "walkpkg.py_wins_dir.e"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(hidden)


def test_iter_modules_of_a_namespace_package() -> None:
    import lins

    assert list(luaimport.iter_modules(lins)) == [
        ("lins.deep.nsmod", str(FIXTURES / "lins" / "deep" / "nsmod.lua"))
    ]


def test_iter_modules_across_namespace_portions_lists_what_import_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for root, names in (("first", ["one", "same"]), ("second", ["same", "two"])):
        (tmp_path / root / "portions").mkdir(parents=True)
        for name in names:
            (tmp_path / root / "portions" / f"{name}.lua").write_text(f"--@function f\nreturn '{root}'\n")
    monkeypatch.syspath_prepend(str(tmp_path / "second"))
    monkeypatch.syspath_prepend(str(tmp_path / "first"))
    import portions  # type: ignore[import-not-found]

    found = list(luaimport.iter_modules(portions))
    assert found == [
        ("portions.one", str(tmp_path / "first" / "portions" / "one.lua")),
        ("portions.same", str(tmp_path / "first" / "portions" / "same.lua")),  # the first portion wins
        ("portions.two", str(tmp_path / "second" / "portions" / "two.lua")),
    ]
    assert importlib.import_module("portions.same").__file__ == found[1].path


def test_iter_modules_lists_each_directory_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "looped").mkdir()
    (tmp_path / "looped" / "__init__.py").write_text("")
    (tmp_path / "looped" / "a.lua").write_text("--@function f\nreturn 1\n")
    (tmp_path / "looped" / "again").symlink_to(tmp_path / "looped", target_is_directory=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    import looped  # type: ignore[import-not-found]

    assert [info.name for info in luaimport.iter_modules(looped)] == ["looped.a"]


def test_iter_modules_refuses_what_is_not_a_package() -> None:
    import lipkg.basic
    import lipkg.shadowed

    with pytest.raises(TypeError, match=r"'lipkg.basic' is a Lua module, not a package"):
        luaimport.iter_modules(lipkg.basic)
    with pytest.raises(TypeError, match=r"'lipkg.shadowed' is neither a Lua module nor a package"):
        luaimport.iter_modules(lipkg.shadowed)


def test_iter_modules_in_a_zip_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _make_zip(tmp_path)
    monkeypatch.syspath_prepend(str(archive))
    import zpkg

    found = list(luaimport.iter_modules(zpkg))
    assert found == [
        ("zpkg.zmod", str(archive / "zpkg" / "zmod.lua")),
        ("zpkg.zother", str(archive / "zpkg" / "zother.lua")),
        ("zpkg.zsub.zdeep", str(archive / "zpkg" / "zsub" / "zdeep.lua")),
    ]
    assert not [name for name in sys.modules if name.startswith("zpkg.")]
    for info in found:
        assert importlib.import_module(info.name).__file__ == info.path


@pytest.mark.parametrize("directories", [True, False], ids=["with-directory-entries", "files-only"])
def test_iter_modules_in_a_zip_sees_namespace_directories_as_import_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, directories: bool
) -> None:
    archive = make_zip(FIXTURES, tmp_path / "tree.zip", directories=directories)
    monkeypatch.syspath_prepend(str(archive))
    import walkpkg

    assert walkpkg.__file__ == str(archive / "walkpkg" / "__init__.py")
    found = [info.name for info in luaimport.iter_modules(walkpkg)]
    # zipimport finds a namespace package only through its directory's own entry in the archive
    namespaced = ["walkpkg.nsdir.b", "walkpkg.nsdir.deeper.c"]
    assert found == ["walkpkg.a", "walkpkg.both", *(namespaced if directories else []), "walkpkg.regular.d"]
    for name in namespaced:
        if directories:
            assert importlib.import_module(name).__file__.startswith(str(archive))
        else:
            with pytest.raises(ModuleNotFoundError):
                importlib.import_module(name)


def test_importlib_resources_work_in_packages_with_lua_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lins
    import lins.deep.nsmod
    import lipkg
    import lipkg.basic as basic

    package = importlib.resources.files(lipkg)
    assert package.joinpath("basic.lua").read_text(encoding="utf-8") == Path(basic.__file__).read_text()
    assert {"__init__.py", "basic.lua", "single.lua"} <= {item.name for item in package.iterdir()}
    nsmod = importlib.resources.files(lins) / "deep" / "nsmod.lua"
    assert nsmod.read_bytes() == Path(lins.deep.nsmod.__file__).read_bytes()

    monkeypatch.syspath_prepend(str(_make_zip(tmp_path)))
    import zpkg.zmod as zmod

    zipped = importlib.resources.files("zpkg")
    assert zipped.joinpath("zmod.lua").read_text(encoding="utf-8") == zmod.__loader__.get_source("zpkg.zmod")
    assert sorted(item.name for item in zipped.iterdir()) == ["__init__.py", "zmod.lua", "zother.lua", "zsub"]


def test_reload_rereads_and_drops_removed_functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "reloadme.lua"
    src.write_text("--@function keep\nreturn 1\n--@function gone\nreturn 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import reloadme

    old_sha = reloadme.keep.sha
    src.write_text("--@function keep\nreturn 10\n--@function added\nreturn 3\n")
    assert importlib.reload(reloadme) is reloadme
    assert reloadme.__all__ == ["keep", "added"]
    assert not hasattr(reloadme, "gone")
    assert "return 10" in reloadme.keep.script
    assert reloadme.keep.sha != old_sha
    assert linecache.getline(reloadme.__file__, 2) == "return 10\n"


def test_reload_never_leaves_a_function_missing_for_other_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hot.lua").write_text("--@function incr\nreturn 1\n--@function other\nreturn 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    hot = importlib.import_module("hot")
    missing: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            if not hasattr(hot, "incr"):
                missing.append("incr")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, inside reload too
    readers = [threading.Thread(target=reader) for _ in range(3)]
    try:
        for thread in readers:
            thread.start()
        for _ in range(200):
            importlib.reload(hot)
    finally:
        done.set()
        for thread in readers:
            thread.join()
        sys.setswitchinterval(interval)
    assert missing == []


def test_reload_relinks_callers_in_other_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rl_callee.lua").write_text("--@function f\nreturn 'old'\n")
    (tmp_path / "rl_caller.lua").write_text("--@function g\nreturn CALL.rl_callee.f({}, {})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import rl_callee
    import rl_caller

    assert "'old'" in rl_caller.g.script
    (tmp_path / "rl_callee.lua").write_text("--@function f\nreturn 'new'\n")
    importlib.reload(rl_callee)
    assert "'new'" in rl_caller.g.script


def test_failed_reload_keeps_the_module_working(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "reloadbad.lua"
    src.write_text("--@function f\nreturn 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import reloadbad

    src.write_text("--@function f\nreturn CALL.nowhere({}, {})\n")
    with pytest.raises(LuaLinkError):
        importlib.reload(reloadbad)
    assert "return 1" in reloadbad.f.script


def test_failed_import_leaves_nothing_behind() -> None:
    before = set(sys.modules)
    with pytest.raises(LuaLinkError) as info:
        importlib.import_module("broken.caller")
    assert info.value.lineno == 6
    assert info.value.filename.endswith("caller.lua")
    assert "broken.callee_ok has no function 'missing'" in str(info.value)
    new = set(sys.modules) - before
    assert new == {"broken"}  # the regular Python package stays, as Python leaves it


def test_syntax_error_in_a_dependency_names_the_dependency() -> None:
    with pytest.raises(LuaSyntaxError) as info:
        importlib.import_module("broken.syntax_dep")
    assert info.value.filename.endswith("bad_marker.lua")
    assert info.value.lineno == 3
    assert "broken.syntax_dep" not in sys.modules
    assert "broken.bad_marker" not in sys.modules


def test_unknown_target_error_lists_known_functions(tmp_path: Path) -> None:
    with pytest.raises(LuaLinkError, match=r"no function of that name in m \(functions: f\)") as info:
        luaimport.loads("--@function f\nlocal x = 1\nreturn CALL.g({}, {})\n", "m")
    assert info.value.lineno == 3


def test_call_to_unknown_module_mentions_install_when_not_installed() -> None:
    luaimport.uninstall()
    with pytest.raises(LuaLinkError, match=r"luaimport.install\(\) has not been called"):
        luaimport.loads("--@function f\nreturn CALL.lipkg.basic.identity({}, {})\n", "m")


def test_call_to_a_python_module_is_a_link_error() -> None:
    with pytest.raises(LuaLinkError, match=r"lipkg\.shadowed is not a Lua module"):
        luaimport.loads("--@function f\nreturn CALL.lipkg.shadowed.ORIGIN({}, {})\n", "m")


def test_loads_is_not_registered_in_sys_modules() -> None:
    module = luaimport.loads("--@function f\nreturn 1\n", "inline_mod")
    assert "inline_mod" not in sys.modules
    assert module.__file__ == "<luaimport inline_mod>"
    assert linecache.getline(module.__file__, 2) == "return 1\n"


def test_same_source_gives_the_same_sha_in_another_process() -> None:
    import lipkg.parity_even as even

    code = (
        "import sys, luaimport; sys.path.insert(0, sys.argv[1]); luaimport.install(); "
        "import lipkg.parity_even as m; print(m.start.sha); print(m.start.script, end='')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(FIXTURES)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
    ).stdout
    sha, script = out.split("\n", 1)
    assert sha == even.start.sha
    assert script == even.start.script


class _Held:
    """Holds any thread that starts importing one of ``names`` inside the loader, until released.

    The thread has begun the import (it holds the module lock, and the module is
    in ``sys.modules``) but has not read the file: the window other threads race into.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
        self.names = names
        self.inside = threading.Event()
        self.release = threading.Event()
        read = luaimport._importer.LuaLoader.get_data

        def get_data(loader: luaimport._importer.LuaLoader, path: str) -> bytes:
            if loader.name in self.names:
                self.inside.set()
                assert self.release.wait(10), "the test never released the import"
            return read(loader, path)

        monkeypatch.setattr(luaimport._importer.LuaLoader, "get_data", get_data)

    def start(self, name: str, results: dict[str, object]) -> threading.Thread:
        def run() -> None:
            try:
                results[name] = importlib.import_module(name)
            except BaseException as exc:  # checked by the test
                results[name] = exc

        thread = threading.Thread(target=run)
        thread.start()
        assert self.inside.wait(10)
        return thread


def test_a_call_target_another_thread_is_importing_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "th_slow.lua").write_text("--@function f\nreturn 1\n")
    (tmp_path / "th_user.lua").write_text("--@function g\nreturn CALL.th_slow.f(KEYS, ARGV) + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    held = _Held(monkeypatch, "th_slow")
    results: dict[str, object] = {}
    slow = held.start("th_slow", results)  # in sys.modules, not yet read
    user = threading.Thread(target=lambda: results.setdefault("th_user", importlib.import_module("th_user")))
    user.start()
    user.join(0.2)
    assert user.is_alive()  # waits for the other import, where it used to fail: "th_slow is not a Lua module"
    held.release.set()
    slow.join(10)
    user.join(10)
    assert isinstance(results["th_slow"], LuaModule)
    assert results["th_user"] is sys.modules["th_user"]
    assert "return 1" in sys.modules["th_user"].g.script


def test_modules_calling_each_other_imported_from_two_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "th_ping.lua").write_text("--@function f\nreturn CALL.th_pong.g(KEYS, ARGV)\n")
    (tmp_path / "th_pong.lua").write_text("--@function g\nreturn CALL.th_ping.f ~= nil\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    held = _Held(monkeypatch, "th_ping")
    results: dict[str, object] = {}
    ping = held.start("th_ping", results)
    pong = threading.Thread(target=lambda: results.setdefault("th_pong", importlib.import_module("th_pong")))
    pong.start()  # waits for th_ping; then th_ping waits for th_pong: the import system's deadlock case
    pong.join(0.2)
    held.release.set()
    ping.join(10)
    pong.join(10)
    assert not ping.is_alive() and not pong.is_alive()
    assert results["th_ping"] is sys.modules["th_ping"]
    assert results["th_pong"] is sys.modules["th_pong"]


def test_bind_passes_over_a_module_another_thread_is_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "th_half.lua").write_text("--@function f\nreturn 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import lipkg.single

    held = _Held(monkeypatch, "th_half")
    results: dict[str, object] = {}
    half = held.start("th_half", results)
    try:
        modules = luaimport.lua_modules()  # what bind(client) loads: it used to fail on th_half
        assert lipkg.single in modules
        assert sys.modules["th_half"] not in modules
        assert all(luaimport.lua_functions(m) for m in modules)
    finally:
        held.release.set()
        half.join(10)
    assert results["th_half"] in luaimport.lua_modules()


def test_a_failed_import_leaves_other_threads_modules_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "th_bad.lua").write_text("--@function f\nreturn CALL.th_nowhere.g(KEYS, ARGV)\n")
    (tmp_path / "th_fine.lua").write_text("--@function f\nreturn 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    held = _Held(monkeypatch, "th_bad")
    results: dict[str, object] = {}
    bad = held.start("th_bad", results)  # its import is under way, and will fail
    fine = importlib.import_module("th_fine")  # another thread's import, finished meanwhile
    held.release.set()
    bad.join(10)
    assert isinstance(results["th_bad"], LuaLinkError)
    assert "th_bad" not in sys.modules
    assert sys.modules["th_fine"] is fine  # it used to be dropped with the failed import's modules
    assert importlib.import_module("th_fine") is fine
