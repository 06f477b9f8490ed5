"""User-facing errors: one line, naming the problem, non-zero exit, no traceback."""


class LabError(Exception):
    """A problem the user can fix (bad input, missing engine, corrupt file).

    tasks.py turns it into a single line on stderr and exit status 2.
    """


class Interrupted(KeyboardInterrupt):
    """A signal (SIGINT, SIGTERM, SIGHUP) ending the lab: unwinds like Ctrl-C, so every cleanup
    path that handles KeyboardInterrupt runs; tasks.py exits with 128 + `signum`."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = int(signum)
