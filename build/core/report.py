"""What the user sees: one line per step outcome, and download progress."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Protocol, TextIO

# No line a task prints is longer: an image's 9,000 extra files must not make one of 600,000.
MAX_LINE = 400
# A list within a line, leaving the rest of the line for what the list is about.
MAX_LISTING = 300
# One item of a list: a path of 4,000 characters must not hide the items after it.
MAX_ITEM = 200


def cut(text: str, most: int = MAX_LINE) -> str:
    """`text`, or as much of it as fits in `most` characters ending in "…"."""
    return text if len(text) <= most else text[: max(most - 1, 0)] + "…"


def listing(items: Iterable[str], separator: str = "; ", most: int = MAX_LISTING) -> str:
    """`items` joined by `separator`, as many as fit in `most` characters, the rest said as
    "… and N more": the first items are always shown, each cut to MAX_ITEM characters."""
    every = list(items)
    shown: list[str] = []
    length = 0
    for index, item in enumerate(every):
        left = len(every) - index - 1  # after this one
        tail = len(f"{separator}… and {left} more") if left else 0
        joint = len(separator) if shown else 0
        item = cut(item, min(MAX_ITEM, most - tail - joint) if not shown else MAX_ITEM)
        if shown and length + joint + len(item) + tail > most:
            break
        shown.append(item)
        length += joint + len(item)
    rest = len(every) - len(shown)
    return separator.join(shown) + (f"{separator}… and {rest} more" if rest else "")


def say(step: str, message: str) -> None:
    print(cut(f"{step:<8} {message}"), flush=True)


def printable(text: str) -> str:
    """`text` with each control character or undecodable byte as a \\x or \\u escape."""
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept as a surrogate
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def human_size(size: int) -> str:
    """A size for people: 812 B, 13.4 KiB, 98.2 MiB."""
    if size < 1024:
        return f"{size} B"
    if size < 1048576:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1048576:.1f} MiB"


class Progress(Protocol):
    def update(self, done: int) -> None: ...
    def close(self) -> None: ...


class PlainProgress:
    """For logs (CI): a line at most every 10 % and every few seconds, never a carriage return."""

    def __init__(self, label: str, total: int | None, stream: TextIO, interval: float = 5.0):
        self.label, self.total, self.stream, self.interval = label, total, stream, interval
        self.done = 0
        self.last_time = time.monotonic()
        self.last_tenth = 0

    def update(self, done: int) -> None:
        self.done += done
        now = time.monotonic()
        tenth = self.done * 10 // self.total if self.total else 0
        if tenth > self.last_tenth or now - self.last_time >= self.interval:
            self.last_tenth, self.last_time = tenth, now
            self._line()

    def _line(self) -> None:
        share = ""
        if self.total:
            share = f" of {human_size(self.total)} ({self.done * 100 // self.total}%)"
        print(f"{'':<8} {self.label}: {human_size(self.done)}{share}", file=self.stream, flush=True)

    def close(self) -> None:
        pass


class BarProgress:
    """For a terminal: a tqdm bar on stderr that disappears when done."""

    def __init__(self, label: str, total: int | None):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, leave=False
        )

    def update(self, done: int) -> None:
        self.bar.update(done)

    def close(self) -> None:
        self.bar.close()


def progress(label: str, total: int | None) -> Progress:
    if sys.stderr.isatty():
        return BarProgress(label, total)
    return PlainProgress(label, total, sys.stdout)
