"""The one error type that command lines turn into a single `error:` line."""

import argparse
import sys


class UserError(Exception):
    """Something the user can fix: a missing file, a bad flag, a bad config.

    Command lines print it as one line, `error: <message>`, and exit 2. Anything
    else that escapes is a bug and keeps its traceback.
    """


class ArgumentParser(argparse.ArgumentParser):
    """`argparse` that raises UserError instead of printing usage and exiting.

    Every command line of the toolkit (the Beam jobs and `yt8m-keras`) uses it, so
    a bad flag is the same one `error:` line everywhere.
    """

    def error(self, message):
        raise UserError(message)


def run_main(main, argv=None) -> int:
    """Runs `main(argv)`, turning a UserError into one `error:` line and exit status 2."""
    try:
        main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
