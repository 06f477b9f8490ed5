"""User-facing errors: one line, naming the problem, non-zero exit, no traceback."""


class LabError(Exception):
    """A problem the user can fix (bad input, missing engine, corrupt file).

    tasks.py turns it into a single line on stderr and exit status 2.
    """
