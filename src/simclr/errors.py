"""The one exception type that reaches the user as a one-line message with exit code 2, and the checks of
values given from Python that lead to it."""

import importlib.util
from typing import Any, TypeGuard

DISTRIBUTION = "simclr-kit"
"""The name simclr is installed under (pip install simclr-kit); its extras hold what only some commands
need."""


class InputError(Exception):
    """Bad user input: a missing or corrupt file, an unknown config key, a value out of range.

    The CLI prints ``simclr: error: <message>`` on one line and exits with code 2; no traceback.
    Library code raises it for anything the user can fix; programming errors stay ordinary exceptions.
    """


class UpdateRefused(InputError):
    """``embed --update`` (``simclr.embed(..., update=True)``) refused to bring a file up to date: it was made
    from other images, or the same folder now reads as another collection. Embedding without update replaces
    it."""


class MissingExtra(InputError, ImportError):
    """A feature's optional dependencies are not installed. An :class:`InputError` (one line, exit code 2
    from the command) and an ``ImportError``; its message names the extra that installs them."""


def missing_extra(what: str, extra: str) -> MissingExtra:
    """``WHAT needs the 'EXTRA' extra: pip install 'simclr-kit[EXTRA]'``."""
    return MissingExtra(f"{what} needs the '{extra}' extra: pip install '{DISTRIBUTION}[{extra}]'")


def require(modules: tuple[str, ...], what: str, extra: str) -> None:
    """Raise :func:`missing_extra` unless every one of ``modules`` can be imported (found, not imported)."""
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package missing, or a module without a spec
            found = False
        if not found:
            raise missing_extra(what, extra)


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
