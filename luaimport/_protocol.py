"""Stage 4: the protocol core, with no I/O.

Every decision about talking to a server lives here once: which command to
send, when a script must be loaded, what may be retried, and how a server
error becomes a :class:`LuaError`.  A protocol is a generator that yields
commands (tuples for ``execute_command``) and receives their replies, or has
the error a command raised thrown into it.  Errors are recognised by their
text, and by class name where the text is ambiguous, because valkey-py
raises its own parallel hierarchy (``valkey.exceptions.ResponseError``).
The sync and async shells in ``_runtime`` only drive these generators; they
decide nothing.

Both backends are protocol steps here: a script runs as EVALSHA and heals
with SCRIPT LOAD + EVAL; a function of a Functions library (a
:class:`Linked` with ``function`` set) runs as FCALL and heals with
FUNCTION LOAD REPLACE + FCALL.  Libraries are deployed by :func:`deploy`
and pruned by :func:`prune`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from typing import Any, NoReturn, TypeVar

from ._debug import with_lua_frame
from ._errors import LuaArgumentError, LuaCrossSlotError, LuaError, LuaNotLoadedError, LuaSyntaxError, native
from ._library import Library, module_of
from ._linker import Linked, Origin

T = TypeVar("T")
Command = tuple[Any, ...]
#: A command, or a list of commands to send in one round trip (replies come back as a list).
Step = Command | list[Command]
Protocol = Generator[Step, Any, T]

#: The step at which a pipeline protocol hands over to the pipeline's own ``execute``:
#: ``(EXECUTE, loads)``, where ``loads`` are (position, script) pairs, each a ``SCRIPT LOAD``
#: to put into the pipeline before the command at that position.  The reply is the list of
#: results of every command run, those loads included, errors included as values.
EXECUTE = "<execute the pipeline>"
#: The step that empties a pipeline and hands its connection back to the pool.
RESET: Command = ("<reset the pipeline>",)
#: The step whose reply lists the nodes a protocol may address one by one: every primary of
#: a cluster, or ``[None]`` for a single server.  ``(ON, node, *command)`` runs a command there.
NODES: Command = ("<the nodes>",)
ON = "<on node>"

#: The two texts a server sends for a real cache miss (Redis 6.2/7, Valkey 9),
#: as redis-py leaves them once it strips the ``NOSCRIPT`` code.
_CACHE_MISS = frozenset({"No matching script. Please use EVAL.", "No matching script."})
#: What every server (and fakeredis) replies to an FCALL of a function it does not have.
_NO_FUNCTION = "Function not found"
_NO_LIBRARY = "Library not found"
#: Servers before Redis 7 have no FUNCTION command (nor FCALL).
_UNKNOWN_FUNCTION = re.compile(r"(?i)unknown command [`'](?:function|fcall|fcall_ro)[`']")

#: The position a server appends to a script's or a function's error: ``script: <sha>`` (Redis
#: 7, Valkey 8), ``script: <function>`` (Redis 7+, Valkey 8 for functions), or no name (Valkey 9).
_TRAILER = re.compile(r"\s*script: ?(?:[0-9a-f]{40}|\w+)?,? on @user_(?:script|function):(\d+)\.\s*\Z")
_RUNNING_62 = re.compile(r"Error running script \(call to f_[0-9a-f]{40}\): @(\w+):(\d+|\?): ")
_COMPILING = re.compile(
    r"Error compiling script \(new function\): |error loading code: |Error compiling function: "
)
#: Lua's own position prefix: ``user_script:N:`` (``user_function:N:`` in a library) on servers,
#: ``[string "<python>"]:N:`` in fakeredis.
_POSITION = re.compile(r'(?:@?user_(?:script|function): ?|\[string "[^"]*"\]:)(\d+): ')
_STACK = re.compile(r"\nstack traceback:\n.*\Z", re.DOTALL)
_CODE = re.compile(r"[A-Z][A-Z0-9_]*\Z")
#: Servers without script flags do not know the read-only commands (and cluster clients,
#: which ask the server where a command's keys are, say so before sending it).
_UNKNOWN_RO = re.compile(
    r"(?i)unknown command [`'](?:evalsha_ro|eval_ro)[`']|(?:evalsha_ro|eval_ro) command doesn't exist in"
)

_SCALARS = (str, bytes, int, float)
_EXACT = frozenset(_SCALARS)


def arguments(function: str, keys: Sequence[Any] | None, args: Sequence[Any] | None) -> Command:
    """Check KEYS and ARGV and return them as the tail of an EVALSHA command.

    Called before anything is sent, so a bad argument never costs a round trip
    and never reaches the server half-converted.  Lists and tuples of plain
    ``str``/``bytes``/``int``/``float`` take a fast path: this runs on every call.
    """
    if (type(keys) is list or type(keys) is tuple) and (type(args) is list or type(args) is tuple):
        for value in keys:
            if type(value) not in _EXACT:
                break
        else:
            for value in args:
                if type(value) not in _EXACT:
                    break
            else:
                return (len(keys), *keys, *args)
    keys = _sequence(function, "keys", keys)
    args = _sequence(function, "args", args)
    return (len(keys), *keys, *args)


def _sequence(function: str, what: str, values: Sequence[Any] | None) -> Sequence[Any]:
    if values is None:
        return ()
    if (type(values) is not list and type(values) is not tuple) and (
        isinstance(values, (str, bytes, bytearray, memoryview)) or not isinstance(values, Sequence)
    ):
        hint = f" (a single value must be wrapped: [{values!r}])" if isinstance(values, (str, bytes)) else ""
        raise LuaArgumentError(
            f"{function}(): {what} must be a list or tuple, not {type(values).__name__}{hint}"
        )
    plain = []
    for i, value in enumerate(values):
        if type(value) not in _EXACT:
            if not isinstance(value, _SCALARS) or isinstance(value, bool):
                raise LuaArgumentError(
                    f"{function}(): {what}[{i}] is {value!r} ({type(value).__name__}); "
                    "KEYS and ARGV take str, bytes, int or float"
                )
            # clients send numbers by repr(): an IntEnum member would go as '<E.A: 1>'
            if isinstance(value, int):
                value = int(value)
            elif isinstance(value, float):
                value = float(value)
        plain.append(value)
    return plain


def same_slot(
    function: str, keys: Sequence[Any], keyslot: Callable[[Any], int], library_error: type[Exception]
) -> None:
    """Refuse keys of one cluster call that live in different slots, before anything is sent.

    ``library_error`` is the client library's own cluster exception, which the error also subclasses.
    """
    if len(keys) < 2:
        return
    slots = [(key, keyslot(key)) for key in keys]
    if len({slot for _, slot in slots}) > 1:
        listed = ", ".join(f"{key!r} -> {slot}" for key, slot in slots)
        raise native(LuaCrossSlotError, library_error)(
            f"{function}(): keys hash to different cluster slots ({listed}); a script runs on one "
            "node, so its keys must share a slot: give them a common hash tag, as in '{user1}:a', "
            "'{user1}:b'",
            function=function,
            slots=slots,
        )


def evalsha(linked: Linked, tail: Command) -> Command:
    """The command that runs a linked script; the shells send it, and on failure run :func:`recover`.

    EVALSHA (EVALSHA_RO when read-only), or for a function of a deployed
    library FCALL (FCALL_RO).  The first attempt is a plain command rather
    than a protocol step so that a successful call, nearly every call, costs
    no generator at all.
    """
    if linked.function is not None:
        return ("FCALL_RO" if linked.readonly else "FCALL", linked.function, *tail)
    return ("EVALSHA_RO" if linked.readonly else "EVALSHA", linked.sha, *tail)


def recover(linked: Linked, command: Command, failure: Exception) -> Protocol[Any]:
    """After ``command`` (an EVALSHA or an FCALL) failed: if it provably did not run, run it once more.

    For a function see :func:`_redeploy`.  For a script, on a cache miss,
    run the script by its text, once.

    The server's cache-miss reply means the script did not run, so running it
    again is safe: a script's own reply can never read like one (the linker's
    ``CALL[0]`` guard sees to that).  The retry is ``SCRIPT LOAD`` then
    ``EVAL`` in one round trip: ``EVAL`` carries the text, so no flush or
    eviction in between can make it miss again, and the ``SCRIPT LOAD`` sent
    first keeps the script off the list of EVAL-only scripts that Redis 8 and
    Valkey 8+ evict.  Nothing is asked first (a ``SCRIPT EXISTS`` would race
    with other clients).  The ``EVAL``'s reply is the call's: if the load
    failed and the EVAL ran (an ACL without ``SCRIPT``), the call succeeded.
    Every other failure is raised, located in the source.  An error of the
    retry that is not the script's (a lost connection, or ``NOPERM`` for a
    user without ``EVAL``) says in a note that the call was being healed.
    """
    function = linked.function is not None
    try:
        if not (_function_missing(failure) if function else _cache_miss(failure)):
            _raise_located(linked, failure)
    finally:
        del failure  # a traceback may hold this frame: holding the error too would make a cycle
    if function:
        return (yield from _redeploy(linked, command))
    run = ("EVAL_RO" if linked.readonly else "EVAL", linked.script, *command[2:])
    healing = f"(while running {linked.qualname} by its text: the server's cache missed it)"
    try:
        _, reply = detached((yield [("SCRIPT LOAD", linked.script), run]))
    except BaseException as exc:
        exc.add_note(healing)
        raise
    if isinstance(reply, Exception):
        try:
            _raise_located(linked, reply, healing)
        finally:
            del reply  # as above: no cycle through this frame
    return reply


def _redeploy(linked: Linked, command: Command) -> Protocol[Any]:
    """After an FCALL found no function (``FUNCTION FLUSH``, a version never deployed): redeploy, retry.

    The server's ``Function not found`` means nothing ran, and a function's
    own reply can never read so (the library's reply guard sees to that), so
    running it again is safe.  ``FUNCTION LOAD REPLACE`` of its library and
    the FCALL go in one round trip.  The retry is a plain FCALL even for a
    read-only function: its ``no-writes`` flag keeps it read-only, and a
    cluster client sends an FCALL to the primary that has just loaded the
    library, where an FCALL_RO might go to a replica it has not reached yet.
    If the library did not load, its error (a compile error at its ``.lua``
    line) is the call's.
    """
    try:
        loaded, reply = detached(
            (yield [("FUNCTION", "LOAD", "REPLACE", linked.script), ("FCALL", *command[1:])])
        )
    except BaseException as exc:
        exc.add_note(f"(while redeploying {linked.qualname}: the server had no function {linked.function})")
        raise
    if isinstance(reply, Exception):
        if isinstance(loaded, Exception) and _function_missing(reply):
            reply = loaded
        try:
            _raise_located(linked, reply)
        finally:
            del loaded, reply  # as in recover(): no cycle through this frame
    return reply


def deploy(libraries: Sequence[Library]) -> Protocol[dict[str, str]]:
    """``FUNCTION LOAD REPLACE`` of each library, in one round trip; ``{qualified name: function name}``.

    A library that does not compile fails with its :class:`LuaSyntaxError`
    at the ``.lua`` line; a server without Functions (Redis 6.2) with a
    :class:`LuaError` saying so.
    """
    replies = detached((yield [("FUNCTION", "LOAD", "REPLACE", library.code) for library in libraries]))
    deployed: dict[str, str] = {}
    for library, reply in zip(libraries, replies, strict=True):
        if isinstance(reply, Exception):
            raise _functions_unsupported(reply) or map_error(library.whole, reply)
        for qualname, linked in library.functions.items():
            assert linked.function is not None
            deployed[qualname] = linked.function
    return deployed


def prune(keep: Collection[str]) -> Protocol[list[str]]:
    """Delete, on every node, the libraries luaimport made whose names are not in ``keep``.

    Each node's ``FUNCTION LIST WITHCODE`` says what is there; only a
    library whose name, marker line and hash agree is luaimport's
    (:func:`_library.module_of`), so nothing another tool loaded is ever
    deleted.  A library already gone (another process pruning too) is not an
    error.  Returns the names deleted, sorted.
    """
    nodes = list((yield NODES))
    listed = detached((yield [(ON, node, "FUNCTION", "LIST", "WITHCODE") for node in nodes]))
    doomed: list[tuple[Any, str]] = []
    for node, reply in zip(nodes, listed, strict=True):
        if isinstance(reply, Exception):
            raise _functions_unsupported(reply) or reply
        doomed.extend(
            (node, name) for name, code in _libraries(reply) if name not in keep and module_of(name, code)
        )
    if not doomed:
        return []
    replies = detached((yield [(ON, node, "FUNCTION", "DELETE", name) for node, name in doomed]))
    deleted = set()
    for (_, name), reply in zip(doomed, replies, strict=True):
        if not isinstance(reply, Exception):
            deleted.add(name)
        elif str(reply) != _NO_LIBRARY:
            raise reply
    return sorted(deleted)


def _libraries(reply: Any) -> Iterator[tuple[str, str]]:
    """(name, code) of each library in a ``FUNCTION LIST WITHCODE`` reply, whatever the client made of it.

    Each entry is a dict (RESP3, or redis-py's parsing) or a flat list of
    field, value pairs (RESP2), with ``bytes`` or ``str`` in both.
    """
    for entry in reply:
        fields = entry.items() if isinstance(entry, dict) else zip(entry[::2], entry[1::2], strict=True)
        found = {_text(key): value for key, value in fields}
        name, code = found.get("library_name"), found.get("library_code")
        if name is not None and code is not None:
            yield _text(name), _text(code)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def then(protocol: Protocol[T], done: Callable[[], None]) -> Protocol[T]:
    """``protocol``, then ``done()`` once it has succeeded: a record kept only for what took effect."""
    result = yield from protocol
    done()
    return result


def _functions_unsupported(exc: Exception) -> LuaError | None:
    """The clear error of a server without Functions (Redis 6.2), or ``None`` if ``exc`` is not that."""
    if not _UNKNOWN_FUNCTION.search(str(exc)):
        return None
    return native(LuaError, type(exc))(
        "the Functions backend needs Redis 7+ or Valkey 7.2+: this server has no FUNCTION command "
        f"(it replied: {exc}); use the default backend, scripts, which works here",
        server_message=str(exc),
        code="ERR",
        filename=None,
        lineno=None,
        function=None,
    )


def _raise_located(linked: Linked, exc: Exception, note: str | None = None) -> NoReturn:
    """Raise ``exc`` located in the source; an error passed through keeps its own cause and context,
    and gets ``note``, if any."""
    located = map_error(linked, exc)
    try:
        if located is exc:
            if note is not None:
                exc.add_note(note)
            raise exc
        raise located from None
    finally:
        del located, exc  # this frame is in the traceback: holding the error would make a cycle


def map_error(linked: Linked, exc: Exception) -> Exception:
    """Locate a server's error about ``linked`` in the user's source.

    Only errors that carry a script position become :class:`LuaError` (or
    :class:`LuaSyntaxError` for compile errors).  Anything else (``BUSY``,
    ``OOM``, ``READONLY``, ``NOPERM``, a script's own ``redis.error_reply``)
    is returned as redis-py raised it, so its specific class still reaches
    the handlers (and cluster clients) written for it.
    """
    server_message = str(exc)
    text, line = _STACK.sub("", server_message), None
    if linked.flags is not None and _UNKNOWN_RO.match(text):
        return _flags_unsupported(linked, exc)
    compiling = _COMPILING.match(text)
    if compiling:
        text = text[compiling.end() :]
    running = _RUNNING_62.match(text)
    if running:
        text = text[running.end() :]
        if running.group(1) == "user_script" and running.group(2) != "?":
            line = int(running.group(2))
        compiling = compiling or _COMPILING.match(text)
        if compiling:
            text = text[compiling.end() :]
    code = _first_word_code(text) or getattr(exc, "status_code", None) or "ERR"
    trailer = _TRAILER.search(text)
    if trailer:
        text, line = text[: trailer.start()], int(trailer.group(1))
    position = _POSITION.match(text)
    if position:
        text, line = text[position.end() :], int(position.group(1))
    if not (compiling or running or trailer or position):
        return exc
    origin = linked.line_map.lookup(line) if line is not None else None
    if compiling and line == 1 and linked.flags is not None:
        return _flags_unsupported(linked, exc)
    if compiling:
        return _syntax_error(linked, text, origin)
    if origin is None:
        return native(LuaError, type(exc))(
            f"{linked.qualname}: {text}",
            server_message=server_message,
            code=code,
            filename=None,
            lineno=None,
            function=linked.qualname,
        )
    return with_lua_frame(
        native(LuaError, type(exc))(
            f"{origin.filename}:{origin.lineno} in {origin.function}: {text}",
            server_message=server_message,
            code=code,
            filename=origin.filename,
            lineno=origin.lineno,
            function=origin.function,
        ),
        origin.filename,
        origin.lineno,
        origin.function,
        origin.source_line,
    )


def _flags_unsupported(linked: Linked, exc: Exception) -> LuaError:
    """A server without script flags (Redis 6.2, fakeredis) refused a ``#!lua`` line or ``*_RO`` command.

    Reported at the directive that asked for the flags: the script itself is
    fine, the server is too old for it.
    """
    origin = linked.line_map.lookup(1)
    assert origin is not None, "line 1 of a script with flags is its #!lua line"
    flags = ", ".join(linked.flags or ()) or "none"
    return native(LuaError, type(exc))(
        f"{origin.filename}:{origin.lineno} in {linked.qualname}: the function declares script flags "
        f"(--@readonly or --@flags: {flags}), which this server does not support: they need Redis 7+ "
        f"or Valkey 7.2+ (the server replied: {exc})",
        server_message=str(exc),
        code="ERR",
        filename=origin.filename,
        lineno=origin.lineno,
        function=linked.qualname,
    )


def _first_word_code(message: str) -> str | None:
    word = message.split(" ", 1)[0]
    return word if _CODE.match(word) else None


def compile_error(linked: Linked, message: str) -> LuaSyntaxError:
    """A Lua compiler's ``user_script:N: message`` about ``linked``, at the ``.lua`` line."""
    position = _POSITION.match(message)
    if position is None:
        return _syntax_error(linked, message, None)
    origin = linked.line_map.lookup(int(position.group(1)))
    return _syntax_error(linked, message[position.end() :], origin)


def _syntax_error(linked: Linked, text: str, origin: Origin | None) -> LuaSyntaxError:
    if origin is None:
        return LuaSyntaxError(f"{linked.qualname}: {text}", "<linked script>", 0)
    return LuaSyntaxError(
        f"{text} (in {origin.function})", origin.filename, origin.lineno, origin.source_line
    )


def pipeline(calls: Sequence[tuple[int, Linked]], raise_on_error: bool, preload: bool) -> Protocol[list[Any]]:
    """Execute a pipeline holding luaimport calls: load what they need, run it once, map their errors.

    ``calls`` are (position in the pipeline, script) pairs.  The pipeline
    carries its own loads: a ``SCRIPT LOAD`` goes in right before the first
    call of each script, so there is no extra round trip, and inside MULTI
    the load and the calls are atomic: no flush or eviction can come between
    them.  A server that has the script does not compile it again.  Where a
    pipeline cannot carry them (``preload``: a cluster pipeline, which routes
    every command by key), one ``SCRIPT EXISTS`` covers every script and only
    the missing ones are loaded, before.  The pipeline then runs exactly
    once: a script that is gone when its call runs (flushed in between) is
    reported as :class:`LuaNotLoadedError`, never retried, since the
    pipeline's other commands have already run.
    """
    firsts: dict[str, tuple[int, Linked]] = {}
    for call in calls:
        linked = call[1]
        if linked.function is None and linked.sha not in firsts:  # functions are deployed by bind
            firsts[linked.sha] = call
    loads = [] if preload else list(firsts.values())  # in the order of the pipeline
    if preload and firsts:
        scripts = [linked for _, linked in firsts.values()]
        try:
            present = yield ("SCRIPT EXISTS", *(linked.sha for linked in scripts))
            missing = [linked for linked, there in zip(scripts, present, strict=True) if not there]
            if missing:
                yield from load_all(missing)
        except GeneratorExit:
            raise
        except BaseException:  # a cancelled or timed-out execute too
            yield RESET  # as the pipeline's own execute does whatever happens: nothing stays queued
            raise
    try:
        ran = list((yield (EXECUTE, tuple(loads))))
    except GeneratorExit:
        raise
    except BaseException as exc:
        # Once it holds a connection, the pipeline's own execute resets it whatever happens; a
        # failure before that (no connection, a cancel) would leave the loads among its commands.
        yield RESET
        # a transaction that failed while queueing raises its first error; a server without the
        # *_RO commands whose SCRIPT LOAD does not compile (fakeredis) gets this far with read-only calls
        readonly = next((linked for _, linked in calls if linked.readonly), None)
        if readonly is None or not isinstance(exc, Exception) or not _UNKNOWN_RO.search(str(exc)):
            raise
        raise _flags_unsupported(readonly, exc) from None
    # load i ran at its call's position + i: popped in order, each is at its call's position
    failed: dict[str, Exception] = {}
    for position, linked in loads:
        reply = ran.pop(position)
        if isinstance(reply, Exception):
            failed[linked.sha] = map_error(linked, reply)
        del reply
    replies = ran
    for position, linked in calls:
        reply = replies[position]
        if isinstance(reply, Exception):
            replies[position] = _pipelined_error(linked, reply, failed)
        del reply
    if raise_on_error:
        for number, reply in enumerate(replies, 1):
            if isinstance(reply, Exception):
                reply.add_note(f"(command #{number} of the pipeline)")
                try:
                    raise reply
                finally:
                    del reply, replies  # as in recover(): no cycle through this frame
    return replies


def _pipelined_error(linked: Linked, reply: Exception, failed: dict[str, Exception]) -> Exception:
    """What a pipelined call of ``linked`` returns for its error ``reply``; ``failed``: loads that failed."""
    if linked.function is not None:
        if not _function_missing(reply):
            return map_error(linked, reply)
        return native(LuaNotLoadedError, type(reply))(
            f"{linked.qualname}: the server had no function {linked.function} when the pipeline ran "
            "(FUNCTION FLUSH or FUNCTION DELETE, or its library was never deployed there); it did not "
            "run, and the pipeline was not replayed because its other commands had run: "
            "luaimport.bind(client, module, backend='functions') deploys it",
            function=linked.qualname,
        )
    if not _cache_miss(reply):
        return map_error(linked, reply)
    if linked.sha in failed:  # did not load: its own error, once per call
        return failed[linked.sha]
    return native(LuaNotLoadedError, type(reply))(
        f"{linked.qualname}: the script was missing from the server's cache when the pipeline ran "
        "(SCRIPT FLUSH, a restart or a failover after it was loaded); it did not run, and the "
        "pipeline was not replayed because its other commands had run",
        function=linked.qualname,
    )


def _cache_miss(reply: object) -> bool:
    return (
        isinstance(reply, Exception)
        and any(c.__name__ == "NoScriptError" for c in type(reply).__mro__)
        and str(reply) in _CACHE_MISS
    )


def _function_missing(reply: object) -> bool:
    """The server's reply to an FCALL of a function it lacks: exactly this text, with no position."""
    return (
        isinstance(reply, Exception)
        and any(c.__name__ == "ResponseError" for c in type(reply).__mro__)
        and str(reply) == _NO_FUNCTION
    )


def load_all(linked: Sequence[Linked]) -> Protocol[dict[str, str]]:
    """Load many scripts in one round trip: yields one batch of SCRIPT LOADs."""
    replies = detached((yield [("SCRIPT LOAD", item.script) for item in linked]))
    loaded = {}
    for item, reply in zip(linked, replies, strict=True):
        if isinstance(reply, Exception):
            raise map_error(item, reply)
        loaded[item.qualname] = item.sha
    return loaded


def detached(replies: list[Any]) -> list[Any]:
    """A batch's replies, their errors without tracebacks.

    A client that returns errors as values caught them in a frame that also
    holds its list of replies (redis-py's pipelines do): a reference cycle,
    through which the frames of the call, and its client, would live until
    the garbage collector runs.  Such a traceback shows only client
    internals; raising the error again gives it a useful one.
    """
    for reply in replies:
        if isinstance(reply, BaseException):
            reply.__traceback__ = None
    return replies
