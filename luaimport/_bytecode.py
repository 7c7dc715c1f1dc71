"""Lua 5.1 bytecode, as ``string.dump`` writes it: just enough to list global accesses.

Every Redis and Valkey server runs Lua 5.1, whose compiler resolves each name
once: a local, an upvalue, or a global read (``GETGLOBAL``) or write
(``SETGLOBAL``) naming a string constant.  Reading those two opcodes from the
compiled chunk, nested functions included, is therefore exact; no guess from
the source text is involved.  The layout follows ``ldump.c``/``lundump.c`` of
Lua 5.1.5: a 12-byte header giving the sizes and byte order, then functions
depth first (source, lines, counts, code, constants, nested functions, and the
debug information: a line per instruction, locals with their pc ranges,
upvalue names).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_SIGNATURE = b"\x1bLua"
_VERSION = 0x51
#: Opcode numbers of Lua 5.1 (lopcodes.h): the two that touch globals.
OP_GETGLOBAL = 5
OP_SETGLOBAL = 7
_OP_CLOSURE = 36
_TNIL, _TBOOLEAN, _TNUMBER, _TSTRING = 0, 1, 3, 4


class BytecodeError(ValueError):
    """A chunk that is not Lua 5.1 bytecode of a layout this reader knows."""


@dataclass(frozen=True, slots=True)
class Access:
    """One ``GETGLOBAL`` or ``SETGLOBAL``: the global's name, and the line the compiler gave it.

    ``visible`` holds the names a typo may have meant: the locals active at
    that instruction, and those of the enclosing functions where it was created.
    """

    name: str
    write: bool
    line: int
    visible: tuple[str, ...]


def global_accesses(chunk: bytes) -> list[Access]:
    """Every global read and write in ``chunk`` and its nested functions, in emission order.

    A nested function's accesses come just before the ``CLOSURE`` that
    creates it, which is when the compiler emitted them.
    """
    reader = _Reader(chunk)
    reader.header()
    main = reader.function()
    if reader.pos != len(chunk):
        raise BytecodeError(f"{len(chunk) - reader.pos} bytes after the main function")
    accesses: list[Access] = []
    main.walk(accesses, ())
    return accesses


@dataclass(frozen=True, slots=True)
class _Function:
    """One function prototype, with the debug information ``string.dump`` keeps."""

    code: list[int]
    constants: list[object]
    nested: list[_Function]
    lines: list[int]
    locals: list[tuple[str, int, int]]  # name, first pc, pc after the last

    def visible(self, pc: int, outer: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(name for name, start, end in self.locals if start <= pc < end) + outer

    def walk(self, accesses: list[Access], outer: tuple[str, ...]) -> None:
        """Collect the accesses; ``outer`` holds the names visible where this function was created."""
        for pc, instruction in enumerate(self.code):
            op = instruction & 0x3F
            if op == _OP_CLOSURE:  # CLOSURE A Bx: nested function Bx, compiled before this instruction
                self.nested[instruction >> 14].walk(accesses, self.visible(pc, outer))
            elif op in (OP_GETGLOBAL, OP_SETGLOBAL):
                name = self.constants[instruction >> 14]
                if not isinstance(name, str):
                    raise BytecodeError(f"global name constant is {name!r}")
                accesses.append(Access(name, op == OP_SETGLOBAL, self.lines[pc], self.visible(pc, outer)))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.order = "<"
        self.int_format = "i"
        self.size_t_format = "Q"
        self.number_size = 8

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise BytecodeError("truncated chunk")
        piece = self.data[self.pos : self.pos + n]
        self.pos += n
        return piece

    def byte(self) -> int:
        return self.take(1)[0]

    def unpack(self, fmt: str) -> int:
        size = struct.calcsize(self.order + fmt)
        value: int = struct.unpack(self.order + fmt, self.take(size))[0]
        return value

    def int(self) -> int:
        return self.unpack(self.int_format)

    def string(self) -> str | None:
        size = self.unpack(self.size_t_format)
        if size == 0:
            return None
        return self.take(size)[:-1].decode("utf-8", "surrogateescape")  # dumped with its NUL

    def header(self) -> None:
        if self.take(4) != _SIGNATURE:
            raise BytecodeError("not a Lua chunk")
        version, fmt, little, int_size, size_t, instruction, number, _integral = self.take(8)
        if version != _VERSION or fmt != 0:
            raise BytecodeError(f"Lua bytecode version {version:#x} (format {fmt}), not 5.1")
        if instruction != 4:
            raise BytecodeError(f"{instruction}-byte instructions")
        sizes = {2: "h", 4: "i", 8: "q"}
        if int_size not in sizes or size_t not in sizes:
            raise BytecodeError(f"unusual sizes: int {int_size}, size_t {size_t}")
        self.order = "<" if little else ">"
        self.int_format = sizes[int_size]
        self.size_t_format = sizes[size_t].upper()
        self.number_size = number

    def function(self) -> _Function:
        self.string()  # source name
        self.int()  # line defined
        self.int()  # last line defined
        self.take(4)  # upvalues, parameters, vararg flags, stack size
        code = [self.unpack("I") for _ in range(self.int())]
        constants = [self.constant() for _ in range(self.int())]
        nested = [self.function() for _ in range(self.int())]
        lines = [self.int() for _ in range(self.int())]
        locals_ = []
        for _ in range(self.int()):
            name = self.string() or ""
            locals_.append((name, self.int(), self.int()))
        for _ in range(self.int()):
            self.string()  # upvalue names: their locals are visible in the enclosing function
        if len(lines) != len(code):
            raise BytecodeError("no line information (stripped chunk)")
        return _Function(code, constants, nested, lines, locals_)

    def constant(self) -> object:
        kind = self.byte()
        if kind == _TNIL:
            return None
        if kind == _TBOOLEAN:
            return bool(self.byte())
        if kind == _TNUMBER:
            return self.take(self.number_size)
        if kind == _TSTRING:
            return self.string()
        raise BytecodeError(f"constant of unknown type {kind}")
