"""The one exception type that reaches the user as a one-line message with exit code 2, and the checks of
values given from Python that lead to it."""

from typing import Any, TypeGuard


class InputError(Exception):
    """Bad user input: a missing or corrupt file, an unknown config key, a value out of range.

    The CLI prints ``simclr: error: <message>`` on one line and exits with code 2; no traceback.
    Library code raises it for anything the user can fix; programming errors stay ordinary exceptions.
    """


class UpdateRefused(InputError):
    """``embed --update`` (``simclr.embed(..., update=True)``) refused to bring a file up to date: it was made
    from other images, or the same folder now reads as another collection. Embedding without update replaces
    it."""


def one_line(exc: BaseException) -> str:
    """The exception's message with whitespace runs (newlines included) collapsed, for an
    :class:`InputError`.
    """
    return " ".join(str(exc).split())


def is_number(value: Any) -> TypeGuard[int | float]:
    """An int or float, not a bool (``True`` is an int to Python, never a number to a user)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_whole(value: Any) -> TypeGuard[int]:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)
