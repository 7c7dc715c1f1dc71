"""Declared keys and arguments: ``fn(client, src=..., amount=...)`` -> KEYS and ARGV.

A function whose head has ``--@keys`` or ``--@args`` takes its values by
name as well as in the two plain lists.  Names are bound, counted and
type-checked here, before anything is sent, so a call that names a key
wrong or leaves one out never reaches the server.  Functions without
declarations never come here: their calls keep the plain path.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Sequence
from typing import Any, NoReturn

from ._errors import LuaArgumentError
from ._protocol import Command, arguments
from ._sections import OPTIONAL, REQUIRED, VARIADIC, Params

_KEY = str | bytes
_ARG = str | bytes | int | float
#: a variadic name's annotation, by the scalar it holds
_LISTS = {_KEY: Sequence[_KEY], _ARG: Sequence[_ARG]}


class Declared:
    """How one declared function binds names to KEYS and ARGV, and the signature it shows."""

    __slots__ = ("args", "function", "keys", "kinds", "ranges")

    def __init__(self, function: str, keys: Params | None, args: Params | None) -> None:
        self.function = function
        self.keys = keys
        self.args = args
        # worked out once: every call of the function reads them
        self.kinds = {id(p): p.kinds() for p in (keys, args) if p is not None}
        self.ranges = [(p, what, p.minimum, p.maximum) for p, what in ((keys, "keys"), (args, "args")) if p]

    def _parameters(self) -> list[tuple[str, Any, Any]]:
        """(name, annotation, default) of the keyword form, in order."""
        out: list[tuple[str, Any, Any]] = []
        for params, scalar in ((self.keys, _KEY), (self.args, _ARG)):
            if params is None:
                continue
            for name, kind in params.kinds():
                if kind == VARIADIC:
                    out.append((name, _LISTS[scalar], ()))
                else:
                    out.append((name, scalar, None if kind == OPTIONAL else inspect.Parameter.empty))
        return out

    def signature(self) -> inspect.Signature:
        """Built when asked for (``inspect.signature``), not at import: a module may hold thousands."""
        keyword = inspect.Parameter.KEYWORD_ONLY
        return inspect.Signature(
            [
                inspect.Parameter("client", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                *(inspect.Parameter(n, keyword, default=d, annotation=a) for n, a, d in self._parameters()),
            ],
            return_annotation=Any,
        )

    def doc(self, name: str, doc: str | None) -> str:
        """The docstring ``help()`` shows: the keyword form first, then the plain form, then the doc."""
        shown = []
        for parameter, annotation, default in self._parameters():
            text = f"{parameter}: {_shown(annotation)}"
            shown.append(text if default is inspect.Parameter.empty else f"{text} = {default!r}")
        call = f"{name}(client, *, {', '.join(shown)}) -> Any" if shown else f"{name}(client) -> Any"
        plain = f"Also {name}(client, keys, args), with the values as lists in the declared order."
        return "\n\n".join(part for part in (call, plain, doc) if part)

    def tail(self, keys: Sequence[Any] | None, args: Sequence[Any] | None, named: dict[str, Any]) -> Command:
        """KEYS and ARGV from either form, checked against the declarations, as an EVALSHA tail."""
        if named:
            missing: list[str] = []
            keys = self._take(self.keys, "keys", keys, named, missing)
            args = self._take(self.args, "args", args, named, missing)
            problems = []
            if missing:
                problems.append(f"missing {' and '.join(missing)}")
            if named:
                problems.append(
                    f"got unexpected {_plural(len(named), 'keyword argument')} "
                    + ", ".join(self._suggest(name) for name in named)
                )
            if problems:
                declared = f" (declared: {self._declared()})" if named else ""
                raise LuaArgumentError(f"{self.function}() {'; '.join(problems)}{declared}")
        tail = arguments(self.function, keys, args)
        for params, what, minimum, maximum in self.ranges:
            count = tail[0] if what == "keys" else len(tail) - 1 - tail[0]
            if count < minimum or (maximum is not None and count > maximum):
                self._miscounted(params, what, count)
        return tail

    def _take(
        self,
        params: Params | None,
        what: str,
        given: Sequence[Any] | None,
        named: dict[str, Any],
        missing: list[str],
    ) -> Sequence[Any] | None:
        if params is None:
            return given  # not declared: only the plain list can give them
        if given is not None:
            raise LuaArgumentError(
                f"{self.function}(): {what} given both as a list and by name; use one form"
            )
        values: list[Any] = []
        for i, (name, kind) in enumerate(self.kinds[id(params)]):
            value = named.pop(name, None)
            if kind == VARIADIC:
                if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | None):
                    raise LuaArgumentError(
                        f"{self.function}(): {name}... takes a list or tuple, not {type(value).__name__}"
                    )
                values.extend(value or ())
            elif value is not None:
                if len(values) < i and len(values) >= params.required:
                    skipped = params.names[len(values)]
                    raise LuaArgumentError(
                        f"{self.function}(): {name!r} given without {skipped!r}: {what} are positional "
                        "in Lua, so optional ones can only be left out from the end"
                    )
                values.append(value)
            elif kind == REQUIRED:
                missing.append(f"{what[:-1]} {name!r}")
        return values

    def _miscounted(self, params: Params, what: str, count: int) -> NoReturn:
        maximum = params.maximum
        if maximum is None:
            expected = f"at least {params.minimum}"
        elif maximum == params.minimum:
            expected = str(maximum)
        else:
            expected = f"{params.minimum} to {maximum}"
        raise LuaArgumentError(f"{self.function}() takes {expected} {what} ({_written(params)}), got {count}")

    def _suggest(self, name: str) -> str:
        """``name`` quoted, with the declared name it was probably meant to be."""
        declared = [n for p in (self.keys, self.args) if p for n in p.names]
        close = difflib.get_close_matches(name, declared, n=1)
        return f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)

    def _declared(self) -> str:
        parts = [f"{what} {_written(p)}" for what, p in (("keys", self.keys), ("args", self.args)) if p]
        return "; ".join(parts)


def _written(params: Params) -> str:
    """The names as the directive wrote them."""
    return " ".join(params.written()) or "none"


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


@functools.cache
def _shown(annotation: Any) -> str:
    """An annotation as ``inspect`` would show it, without module prefixes (one of four, so cached)."""
    return inspect.formatannotation(annotation).replace("typing.", "").replace("collections.abc.", "")
