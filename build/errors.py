"""One error type for everything a user can fix, rendered as one line."""

from __future__ import annotations


class BuildError(Exception):
    """A failure the user can act on: what went wrong, and what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


def one_line(error: BaseException) -> str:
    """The single stderr line for an error that ends a run."""
    if isinstance(error, BuildError):
        text = str(error)
    elif isinstance(error, OSError):
        where = f": {error.filename}" if error.filename else ""
        text = f"{error.strerror or error}{where}"
    else:
        text = str(error) or type(error).__name__
    return "error: " + " ".join(text.split())
