"""The one exception type that reaches the user as a one-line message with exit code 2."""


class InputError(Exception):
    """Bad user input: a missing or corrupt file, an unknown config key, a value out of range.

    The CLI prints ``simclr: error: <message>`` on one line and exits with code 2; no traceback.
    Library code raises it for anything the user can fix; programming errors stay ordinary exceptions.
    """


def one_line(exc: BaseException) -> str:
    """The exception's message with whitespace runs (newlines included) collapsed, for an :class:`InputError`."""
    return " ".join(str(exc).split())
