"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class RobustKDError(Exception):
    """A user-facing error: bad input, missing data, a mismatched checkpoint, a diverged run.

    The message is one line naming what was wrong and what was expected.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): for one-line errors that
    quote a library's message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
