"""sysusers.d and tmpfiles.d files in an image, read as systemd reads them, and the only lines
an Alloy image may hold in them: the lines this build writes.

systemd-sysusers creates users and groups, systemd-tmpfiles creates, copies, chowns and chmods
files, both as root, from every `*.conf` in /usr/lib/{sysusers,tmpfiles}.d/ and
/usr/local/lib/{sysusers,tmpfiles}.d/ (the /usr that an image merges into). So any line in such
a file is root's work on the host: verify allows only the lines in BUILD_WRITES.

The syntax, as systemd's conf_file_read() and the two parse_line()s read it (no line
continuation in either format):
- a line ends at \\n, \\r or NUL, and a run of different ones (\\r\\n, \\n\\r\\0) is one end;
- leading and trailing whitespace is stripped; an empty line or one starting with # is skipped;
- fields are split at whitespace; '...' and "..." quote within a field, and a backslash
  escapes the next character, inside quotes too (extract_first_word with EXTRACT_UNQUOTE);
  tmpfiles also decodes C escapes (EXTRACT_CUNESCAPE: \\n, \\x41, \\101, \\u00e9 ...);
- tmpfiles: type, path, mode, user, group, age, then the rest of the line is the argument;
  sysusers: at most six fields, and anything after them is an error ("trailing garbage")."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from build.image.content import SYSUSERS, TMPFILES
from build.model.templates import TEMPLATES

FORMATS = ("sysusers.d", "tmpfiles.d")
# Where systemd reads them in the part of the host an image merges into.
_PATH = re.compile(r"usr/(?:local/)?lib/(sysusers\.d|tmpfiles\.d)/[^/]+\.conf")
# What a line of each format makes systemd do, as root, for the refusal.
DOES = {
    "sysusers.d": "sysusers creates users and groups as root",
    "tmpfiles.d": "tmpfiles copies, chowns and chmods as root",
}
MAX_BYTES = 64 << 10  # a file of a few lines; systemd reads lines of up to 1 MiB
_SHOWN = 60  # characters of a refused line in its message
_EOL = "\n\r\0"
_WHITESPACE = " \t\n\r"
_TMPFILES_FIELDS = 6
_SYSUSERS_FIELDS = 6
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "s": " ",
}


class SyntaxProblem(ValueError):
    """A line systemd refuses to parse (it skips it, with an error)."""


@dataclass(frozen=True)
class Line:
    number: int  # from 1, as systemd counts in its messages
    text: str  # stripped
    fields: tuple[str, ...]  # as systemd parses them; empty when `problem` is set
    problem: str | None = None


def format_of(path: str) -> str | None:
    """ "sysusers.d" or "tmpfiles.d" for a path in an image that systemd reads as one, else
    None."""
    match = _PATH.fullmatch(path)
    return match[1] if match else None


def lines(text: str) -> Iterator[tuple[int, str]]:
    """(number, stripped text) of each line systemd reads from `text`: blank and comment lines
    counted but not yielded."""
    number, start, index = 0, 0, 0
    while start < len(text):
        index = start
        while index < len(text) and text[index] not in _EOL:
            index += 1
        number += 1
        stripped = text[start:index].strip(_WHITESPACE)
        if stripped and not stripped.startswith("#"):
            yield number, stripped
        seen: set[str] = set()
        while index < len(text) and text[index] in _EOL and text[index] not in seen:
            seen.add(text[index])
            index += 1
        start = index


def parse(text: str, kind: str) -> Iterator[Line]:
    """Every line of a `kind` file that systemd acts on, with its fields or its problem."""
    for number, line in lines(text):
        try:
            fields = _fields(line, kind)
        except SyntaxProblem as problem:
            yield Line(number, line, (), str(problem))
        else:
            yield Line(number, line, fields)


def _fields(line: str, kind: str) -> tuple[str, ...]:
    if kind == "tmpfiles.d":
        words, rest = split_words(line, _TMPFILES_FIELDS, c_escapes=True)
        if len(words) < 2:
            raise SyntaxProblem("a tmpfiles line needs at least a type and a path")
        return (*words, *([rest] if rest else []))
    words, rest = split_words(line, _SYSUSERS_FIELDS, c_escapes=False)
    if len(words) < 2:
        raise SyntaxProblem("a sysusers line needs at least a type and a name")
    if rest:
        raise SyntaxProblem("more than six fields (systemd-sysusers: trailing garbage)")
    return tuple(words)


def split_words(text: str, most: int, c_escapes: bool) -> tuple[list[str], str]:
    """Up to `most` whitespace-separated words of `text`, unquoted and unescaped as systemd's
    extract_first_word() does, and the rest of the text after them."""
    words: list[str] = []
    index = 0
    while len(words) < most:
        while index < len(text) and text[index] in _WHITESPACE:
            index += 1
        if index >= len(text):
            break
        word, index = _word(text, index, c_escapes)
        words.append(word)
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return words, text[index:]


def _word(text: str, index: int, c_escapes: bool) -> tuple[str, int]:
    out: list[str] = []
    quote = ""
    while index < len(text):
        char = text[index]
        if char == "\\":
            decoded, index = _escape(text, index + 1, c_escapes)
            out.append(decoded)
            continue
        if quote:
            if char == quote:
                quote = ""
            else:
                out.append(char)
        elif char in "'\"":
            quote = char
        elif char in _WHITESPACE:
            break
        else:
            out.append(char)
        index += 1
    if quote:
        raise SyntaxProblem(f"unterminated {quote} quote")
    return "".join(out), index


def _escape(text: str, index: int, c_escapes: bool) -> tuple[str, int]:
    """The character(s) a backslash before text[index] stands for, and where reading goes on."""
    if index >= len(text):
        raise SyntaxProblem("a backslash ends the line")
    char = text[index]
    if not c_escapes:
        return char, index + 1
    if char in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[char], index + 1
    for lead, digits, base in (("x", 2, 16), ("u", 4, 16), ("U", 8, 16)):
        if char == lead:
            return _code(text[index + 1 : index + 1 + digits], digits, base), index + 1 + digits
    if char in "01234567":
        return _code(text[index : index + 3], 3, 8), index + 3
    raise SyntaxProblem(f"unknown escape \\{char}")


def _code(digits: str, count: int, base: int) -> str:
    allowed = "01234567" if base == 8 else "0123456789abcdefABCDEF"
    if len(digits) != count or any(d not in allowed for d in digits):
        raise SyntaxProblem(f"bad escape {digits!r}")
    code = int(digits, base)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise SyntaxProblem(f"escape of an invalid character ({code:#x})")
    return chr(code)


def refusals(path: str, kind: str, text: str) -> Iterator[str]:
    """What is wrong with each line of the `kind` file at `path` (in the image) that this
    build does not write: "LINE N: 'TEXT' is not a line this build writes (WHY)"."""
    allowed = BUILD_WRITES.get(path, ())
    for line in parse(text, kind):
        shown = _quoted(line.text)
        if line.problem is not None:
            yield f"line {line.number}: {shown} does not parse ({line.problem}; {DOES[kind]})"
        elif line.fields not in allowed:
            yield f"line {line.number}: {shown} is not a line this build writes ({DOES[kind]})"


# The lines this build writes (with --run-as=alloy), by the file that holds them, as the fields
# systemd parses them into: read from the templates it writes them from.
_WRITTEN = {SYSUSERS.path: "sysusers.conf", TMPFILES.path: "tmpfiles.conf"}
BUILD_WRITES: dict[str, tuple[tuple[str, ...], ...]] = {
    path: tuple(
        line.fields
        for line in parse(
            (TEMPLATES / "image" / name).read_text(encoding="utf-8"), str(format_of(path))
        )
    )
    for path, name in _WRITTEN.items()
}


def _quoted(text: str) -> str:
    printable = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: _SHOWN * 2])
    if len(printable) > _SHOWN:
        printable = printable[: _SHOWN - 2] + " …"
    return f"'{printable}'"
