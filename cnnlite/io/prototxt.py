"""Protobuf text format, read without a schema (Caffe's ``.prototxt`` network and solver files).

The grammar is small::

    message := field*
    field   := NAME ':' value            # a scalar: 0.01, -3, 1e-4, "a \\"quoted\\" text",
                                         #           MAX (an enum), true / false
             | NAME ':'? '{' message '}' # a nested message ('<' ... '>' also allowed)
             | NAME ':' '[' value (',' value)* ']'   # several values of a repeated field
    '#' starts a comment that runs to the end of the line; ',' or ';' may end a field.

Without the schema nothing says whether a field is repeated, so every field maps to a list of
its values in file order (``all(name)``); ``get(name)`` gives the single value of a field that
is not repeated. Numbers without '.', exponent, ``inf`` or ``nan`` are ints. Enum values are
kept as their names (``"MAX"``), strings are unescaped, ``true``/``false`` become bools.

>>> net = parse_prototxt('name: "tiny"  layer { name: "fc" type: "InnerProduct" '
...                      'inner_product_param { num_output: 10 } }')
>>> net.get("name"), net.message("layer").message("inner_product_param").get("num_output")
('tiny', 10)
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

__all__ = ["Message", "PrototxtError", "parse_prototxt", "read_prototxt"]


class PrototxtError(ValueError):
    """Malformed protobuf text: the message names the file, the line and the column."""


class Message:
    """One parsed message: field name -> the list of its values, in file order.

    A value is an int, float, bool, str (quoted strings and enum names alike) or a nested
    ``Message``. ``line`` is where the message starts (1 for a whole file); ``source`` names
    the file, for error messages.
    """

    def __init__(self, source: str = "<text>", line: int = 1):
        self.source, self.line = source, line
        self._values: dict[str, list] = {}
        self._lines: dict[str, list[int]] = {}

    def add(self, name: str, value: Any, line: int) -> None:
        """Append ``value`` (found on ``line``) to field ``name``."""
        self._values.setdefault(name, []).append(value)
        self._lines.setdefault(name, []).append(line)

    def all(self, name: str) -> list:
        """Every value of field ``name`` (an empty list if it is absent)."""
        return list(self._values.get(name, []))

    def get(self, name: str, default: Any = None) -> Any:
        """The value of field ``name``, or ``default`` if absent; given more than once, the
        last value wins (as protobuf merges a singular field)."""
        values = self._values.get(name)
        return values[-1] if values else default

    def message(self, name: str) -> "Message":
        """The nested message ``name``, or an empty one if absent (so that defaults apply)."""
        value = self.get(name)
        if value is None:
            return Message(self.source, self.line)
        if not isinstance(value, Message):
            raise PrototxtError(f"{self.where(name)}: expected '{name} {{ ... }}', "
                                f"got {name}: {value!r}")
        return value

    def line_of(self, name: str, index: int = -1) -> int:
        """The line of value ``index`` of field ``name`` (the message's line if absent)."""
        lines = self._lines.get(name)
        return lines[index] if lines else self.line

    def where(self, name: str | None = None) -> str:
        """``file:line`` of field ``name`` (or of this message), for error messages."""
        return f"{self.source}:{self.line if name is None else self.line_of(name)}"

    def names(self) -> list[str]:
        """The field names, in the order they first appear."""
        return list(self._values)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def __repr__(self):
        return f"Message({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


# One alternative per token kind; the first that matches at the position wins. Numbers come
# before names so that "inf"/"nan" written with a sign are numbers.
_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n\f\v]+|\#[^\n]*)
  | (?P<number>[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf(?:inity)?|nan)[fF]?(?![\w.]))
  | (?P<name>[A-Za-z_][\w.]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<open_string>["'])
  | (?P<punct>[{}<>:\[\],;])
""", re.VERBOSE)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
            "\\": "\\", "'": "'", '"': '"', "?": "?"}
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|.)", re.DOTALL)


class _Token:
    __slots__ = ("kind", "text", "line", "column")

    def __init__(self, kind, text, line, column):
        self.kind, self.text, self.line, self.column = kind, text, line, column


class _Parser:
    """Recursive descent over the tokens (the nesting depth of real files is small)."""

    def __init__(self, text: str, source: str):
        self.source = source
        self.tokens = list(self._tokenize(text))
        self.position = 0

    def error(self, token: _Token | None, expected: str) -> PrototxtError:
        if token is None:
            return PrototxtError(f"{self.source}: unexpected end of file, expected {expected}")
        return PrototxtError(f"{self.source}:{token.line}:{token.column}: expected {expected}, "
                             f"got {token.text!r}")

    def _tokenize(self, text: str) -> Iterator[_Token]:
        line, line_start, position = 1, 0, 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            column = position - line_start + 1
            if match is None or match.lastgroup == "open_string":
                what = ("a closing quote on the same line" if match is not None
                        else "a name, number, string or one of { } < > : [ ] , ;")
                found = text[position:position + 20].split("\n")[0]
                raise PrototxtError(f"{self.source}:{line}:{column}: expected {what}, "
                                    f"got {found!r}")
            if match.lastgroup != "space":
                yield _Token(match.lastgroup, match.group(), line, column)
            newlines = match.group().count("\n")
            if newlines:
                line += newlines
                line_start = position + match.group().rindex("\n") + 1
            position = match.end()

    def peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> _Token | None:
        token = self.peek()
        self.position += token is not None
        return token

    def take_punct(self, *allowed: str) -> _Token | None:
        """Consume the next token if it is one of ``allowed``; otherwise leave it."""
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text in allowed:
            return self.take()
        return None

    def parse_message(self, message: Message, closing: str | None) -> Message:
        while True:
            token = self.take()
            if token is None:
                if closing is None:
                    return message
                raise self.error(None, f"'{closing}' to close the message opened on line "
                                       f"{message.line}")
            if closing is not None and token.kind == "punct" and token.text == closing:
                return message
            if token.kind != "name":
                raise self.error(token, "a field name" + (f" or '{closing}'" if closing else ""))
            self.parse_field(message, token)
            self.take_punct(",", ";")

    def parse_field(self, message: Message, name: _Token) -> None:
        colon = self.take_punct(":")
        opening = self.take_punct("{", "<")
        if opening is not None:
            nested = Message(self.source, opening.line)
            message.add(name.text, self.parse_message(nested, "}" if opening.text == "{"
                                                      else ">"), name.line)
            return
        if colon is None:
            raise self.error(self.peek(), f"':' or '{{' after field name {name.text!r}")
        if self.take_punct("["):
            if self.take_punct("]"):
                return
            while True:
                message.add(name.text, self.parse_scalar(name.text), name.line)
                if self.take_punct("]"):
                    return
                if not self.take_punct(","):
                    raise self.error(self.peek(), "',' or ']' in the list")
        message.add(name.text, self.parse_scalar(name.text), name.line)

    def parse_scalar(self, field: str):
        token = self.take()
        if token is None or token.kind == "punct":
            raise self.error(token, f"a value for field {field!r}")
        if token.kind == "number":
            return _number(token.text)
        if token.kind == "string":
            text = token.text[1:-1]
            # Adjacent strings are concatenated, as in C.
            while self.peek() is not None and self.peek().kind == "string":
                text += self.take().text[1:-1]
            return _unescape(text)
        return {"true": True, "True": True, "false": False, "False": False}.get(token.text,
                                                                                 token.text)


def _number(text: str) -> int | float:
    text = text.rstrip("fF") if not text.lower().endswith(("inf", "infinity")) else text
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    return float(text)


def _unescape(text: str) -> str:
    def replace(match):
        escape = match.group(1)
        if escape[0] == "x":
            return chr(int(escape[1:], 16))
        if escape[0] in "01234567":
            return chr(int(escape, 8))
        return _ESCAPES.get(escape, "\\" + escape)

    return _ESCAPE.sub(replace, text)


def parse_prototxt(text: str, source: str = "<text>") -> Message:
    """Parse protobuf text ``text``; ``source`` names it in errors. Raises ``PrototxtError``."""
    return _Parser(text, source).parse_message(Message(source, 1), None)


def read_prototxt(path: str | Path) -> Message:
    """Parse the file at ``path`` (UTF-8; undecodable bytes, e.g. in comments, are replaced)."""
    path = Path(path)
    return parse_prototxt(path.read_text(encoding="utf-8", errors="replace"), str(path))
