"""The one exception type that means "the user's input is wrong".

The CLI turns it into a single line on stderr and exit code 1; anything else is a bug and
keeps its traceback (shown with `--debug`).
"""


class UserError(Exception):
    """Bad input, bad config or a missing prerequisite, described in one line."""
