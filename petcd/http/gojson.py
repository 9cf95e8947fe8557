"""Reading a gateway request body the way etcd's gateway (Go's encoding/json under jsonpb) does.

What clients see of it, checked on etcd 3.5.1: only the first JSON value of the body is read
(anything after it is ignored), ``null`` or an empty body is an empty request, a value that is not
an object is refused with ``json: cannot unmarshal array into Go value of type
map[string]json.RawMessage``, and a syntax error carries Go's scanner text (``invalid character 'x'
looking for beginning of value``, ``unexpected EOF``...). Field values are checked against the
message before protobuf's own parser sees them, so the common mistakes get Go's texts too: a
number where bytes belong, bad base64, a fraction for an integer, an unknown enum name.
"""

from __future__ import annotations

import json
import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

__all__ = ["GoJSONError", "check_fields", "first_value"]

_WS = " \t\r\n"
_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


class GoJSONError(Exception):
    pass


class _Number(float):
    """A JSON number with a fraction or exponent, keeping its text for Go's error message."""

    text: str

    @classmethod
    def of(cls, text: str) -> _Number:
        n = cls(text)
        n.text = text
        return n


_INTEGER = re.compile(r"^-?(0|[1-9][0-9]*)$")


def _quote_char(c: str) -> str:
    # Go's quoteChar: 'x', with ' and control characters escaped as strconv.Quote would
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    q = json.dumps(c)[1:-1] if (ord(c) < 0x20 or c == "\\") else c
    return f"'{q}'"


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def fail(self, context: str) -> GoJSONError:
        if self.i >= len(self.s):
            return GoJSONError("unexpected EOF")
        return GoJSONError(f"invalid character {_quote_char(self.s[self.i])} {context}")

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in _WS:
            self.i += 1

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def value(self) -> None:
        self.ws()
        c = self.peek()
        if c == "{":
            self.obj()
        elif c == "[":
            self.arr()
        elif c == '"':
            self.string()
        elif c == "-" or c.isdigit():
            self.number()
        elif c in ("t", "f", "n"):
            self.literal({"t": "true", "f": "false", "n": "null"}[c])
        else:
            raise self.fail("looking for beginning of value")

    def literal(self, word: str) -> None:
        for expected in word:
            if self.i >= len(self.s):
                raise GoJSONError("unexpected EOF")
            if self.s[self.i] != expected:
                raise self.fail(f"in literal {word} (expecting {_quote_char(expected)})")
            self.i += 1

    def string(self) -> None:
        self.i += 1
        while True:
            c = self.peek()
            if not c:
                raise GoJSONError("unexpected EOF")
            if c == '"':
                self.i += 1
                return
            if c == "\\":
                self.i += 1
                e = self.peek()
                if not e:
                    raise GoJSONError("unexpected EOF")
                if e == "u":
                    self.i += 1
                    for _ in range(4):
                        h = self.peek()
                        if not h:
                            raise GoJSONError("unexpected EOF")
                        if h not in "0123456789abcdefABCDEF":
                            raise self.fail("in \\u hexadecimal character escape")
                        self.i += 1
                    continue
                if e not in '"\\/bfnrt':
                    raise self.fail("in string escape code")
            elif ord(c) < 0x20:
                raise self.fail("in string literal")
            self.i += 1

    def digits(self) -> int:
        start = self.i
        while self.peek().isdigit():
            self.i += 1
        return self.i - start

    def number(self) -> None:
        if self.peek() == "-":
            self.i += 1
            if not self.peek():
                raise GoJSONError("unexpected EOF")
            if not self.peek().isdigit():
                raise self.fail("in numeric literal")
        if self.peek() == "0":
            self.i += 1
        else:
            self.digits()
        if self.peek() == ".":
            self.i += 1
            if not self.peek():
                raise GoJSONError("unexpected EOF")
            if not self.digits():
                raise self.fail("after decimal point in numeric literal")
        if self.peek() in ("e", "E"):
            self.i += 1
            if self.peek() in ("+", "-"):
                self.i += 1
            if not self.peek():
                raise GoJSONError("unexpected EOF")
            if not self.digits():
                raise self.fail("in exponent of numeric literal")

    def obj(self) -> None:
        self.i += 1
        self.ws()
        if self.peek() == "}":
            self.i += 1
            return
        while True:
            self.ws()
            if self.peek() != '"':
                raise self.fail("looking for beginning of object key string")
            self.string()
            self.ws()
            if self.peek() != ":":
                raise self.fail("after object key")
            self.i += 1
            self.value()
            self.ws()
            c = self.peek()
            if c == ",":
                self.i += 1
                continue
            if c == "}":
                self.i += 1
                return
            raise self.fail("after object key:value pair")

    def arr(self) -> None:
        self.i += 1
        self.ws()
        if self.peek() == "]":
            self.i += 1
            return
        while True:
            self.value()
            self.ws()
            c = self.peek()
            if c == ",":
                self.i += 1
                continue
            if c == "]":
                self.i += 1
                return
            raise self.fail("after array element")


def base64_error_offset(src: bytes) -> int | None:
    """Where Go's base64.StdEncoding.DecodeString fails on ``src`` (its CorruptInputError), or
    None if it decodes. Quanta of four; CR and LF are skipped; '=' pads the last one."""
    si, n = 0, len(src)
    while True:
        j = 0
        while j < 4:
            if si == n:
                if j == 0:
                    return None
                return si - j  # a short last quantum: padding was required
            c = src[si]
            si += 1
            if c in _B64:
                j += 1
                continue
            if c in (0x0A, 0x0D):
                continue
            if c != 0x3D or j < 2:  # not '=', or padding too early
                return si - 1
            if j == 2:  # "==" expected: the second '='
                while si < n and src[si] in (0x0A, 0x0D):
                    si += 1
                if si == n:
                    return n
                if src[si] != 0x3D:
                    return si - 1
                si += 1
            while si < n and src[si] in (0x0A, 0x0D):
                si += 1
            return si if si < n else None
        # a whole quantum: go on


def _kind(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def split_value(text: str) -> tuple[dict[str, Any] | None, int]:
    """The first JSON value of ``text`` (an object, or None for ``null`` or nothing but white
    space) and where it ends. Raises GoJSONError with Go's text ("unexpected EOF" when the value
    is not whole yet)."""
    sc = _Scanner(text)
    sc.ws()
    if sc.i >= len(text):
        return None, sc.i
    start = sc.i
    sc.value()
    value = json.loads(text[start:sc.i], parse_float=_Number.of)
    if value is not None and not isinstance(value, dict):
        raise GoJSONError(f"json: cannot unmarshal {_kind(value)} into Go value of type map[string]json.RawMessage")
    return value, sc.i


def first_value(text: str) -> dict[str, Any] | None:
    """The first JSON value of ``text`` as an object; None for an empty body or ``null``.
    Raises GoJSONError with Go's text."""
    value, _ = split_value(text)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise GoJSONError(f"json: cannot unmarshal {_kind(value)} into Go value of type map[string]json.RawMessage")
    return value


_INTS = {
    FieldDescriptor.TYPE_INT64: "int64", FieldDescriptor.TYPE_SINT64: "int64", FieldDescriptor.TYPE_SFIXED64: "int64",
    FieldDescriptor.TYPE_UINT64: "uint64", FieldDescriptor.TYPE_FIXED64: "uint64",
    FieldDescriptor.TYPE_INT32: "int32", FieldDescriptor.TYPE_SINT32: "int32", FieldDescriptor.TYPE_SFIXED32: "int32",
    FieldDescriptor.TYPE_UINT32: "uint32", FieldDescriptor.TYPE_FIXED32: "uint32",
}


def _check_value(field: FieldDescriptor, v: Any) -> None:
    t = field.type
    if v is None:
        return
    if t == FieldDescriptor.TYPE_BYTES:
        if not isinstance(v, str):
            raise GoJSONError(f"json: cannot unmarshal {_kind(v)} into Go value of type []uint8")
        bad = base64_error_offset(v.encode())
        if bad is not None:
            raise GoJSONError(f"illegal base64 data at input byte {bad}")
    elif t in _INTS:
        go = _INTS[t]
        if isinstance(v, str):
            sc = _Scanner(v)
            sc.value()  # jsonpb reads a quoted integer as the JSON inside the quotes
            literal = v[:sc.i]
            if _INTEGER.match(literal) is None and (literal[:1] == "-" or literal[:1].isdigit()):
                raise GoJSONError(f"json: cannot unmarshal number {literal} into Go value of type {go}")
        elif isinstance(v, float):
            text = v.text if isinstance(v, _Number) else json.dumps(v)
            raise GoJSONError(f"json: cannot unmarshal number {text} into Go value of type {go}")
        elif not isinstance(v, int) or isinstance(v, bool):
            raise GoJSONError(f"json: cannot unmarshal {_kind(v)} into Go value of type {go}")
    elif t == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        if enum is not None and isinstance(v, str) and enum.values_by_name.get(v) is None:
            raise GoJSONError(f"unknown value {json.dumps(json.dumps(v))} for enum {enum.full_name}")
    elif t == FieldDescriptor.TYPE_MESSAGE:
        if isinstance(v, dict) and field.message_type is not None:
            check_fields(field.message_type, v)


def check_fields(desc: Descriptor | Any, obj: dict[str, Any]) -> None:
    """Go's texts for the common type mistakes in ``obj`` against message ``desc``."""
    by_name = {**{f.json_name: f for f in desc.fields}, **{f.name: f for f in desc.fields}}
    for key, v in obj.items():
        field = by_name.get(key)
        if field is None:
            continue
        if field.is_repeated and isinstance(v, list):
            for item in v:
                _check_value(field, item)
        else:
            _check_value(field, v)
