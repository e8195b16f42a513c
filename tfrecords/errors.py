"""The one error type that command lines turn into a single `error:` line."""


class UserError(Exception):
    """Something the user can fix: a missing file, a bad flag, a bad config.

    Command lines print it as one line, `error: <message>`, and exit 2. Anything
    else that escapes is a bug and keeps its traceback.
    """
