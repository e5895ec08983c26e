"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class RobustKDError(Exception):
    """A user-facing error: bad input, missing data, a mismatched checkpoint, a diverged run.

    The message is one line naming what was wrong and what was expected.
    """
