"""`./zmqlab`: Invoke's command line with the lab's exit-code contract.

  0    fine
  1    the thing checked failed or got worse (tasks.py decides)
  2    usage or input error: ONE line on stderr, no traceback -- including everything Invoke's
       own parser rejects (an unknown task or flag, a missing value or positional argument)
       and every value its type conversion rejects (`--threads abc`, `--msgs 1e3`)
  130  interrupted (SIGINT), 143 terminated (SIGTERM), 129 hung up (SIGHUP)
  141  stdout closed under it (`./zmqlab --list | head -1`), quietly, as SIGPIPE would end it

Stock Invoke exits 1 for a parse error and prints a traceback for a value it cannot convert,
which in CI reads as "got worse". `python -m invoke` still works on tasks.py; this Program is
what the launcher runs.
"""
from __future__ import annotations

import os
import re
import signal
import sys
from typing import Any

from invoke import Program
from invoke.exceptions import Exit, ParseError, UnexpectedExit
from invoke.parser import Argument, ParserContext


BINARY = "./zmqlab"
USAGE = 2

KIND_WORDS = {int: "a whole number", float: "a number"}


def flag_name(arg: Argument) -> str:
    long = [n for n in arg.names if len(n) > 1]
    return "--" + (long[0] if long else arg.names[0])


class CheckedArgument(Argument):
    """An Argument whose failed type conversion is a ParseError naming the flag, not a
    ValueError traceback (int('abc'), int('1e3'), float('x'))."""

    def set_value(self, value: Any, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except (ValueError, TypeError, OverflowError):
            kind = KIND_WORDS.get(self.kind, getattr(self.kind, "__name__", "a value"))
            task = getattr(self, "zmqlab_task", None)
            raise ParseError("%s%s expects %s, got %r" % (
                task + ": " if task else "", flag_name(self), kind, value)) from None


def one_line(text: str) -> str:
    return " ".join(str(text).split())


class LabProgram(Program):
    """Invoke's Program: same parsing, help and listing; errors mapped to the contract."""

    def parse_core(self, argv: Any) -> None:
        super().parse_core(argv)
        # Invoke turns bytecode caching off (unless --write-pyc); the lab follows Python's own
        # setting instead (PYTHONDONTWRITEBYTECODE, -B), so its modules compile once, not on
        # every call.
        if not self.args["write-pyc"].value:
            sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)

    def _make_parser(self):
        parser = super()._make_parser()
        for context in parser.contexts.values():
            for arg in context.args.values():
                if type(arg) is Argument:
                    arg.__class__ = CheckedArgument
                    arg.zmqlab_task = context.name
        return parser

    def parse_tasks(self) -> None:
        super().parse_tasks()
        if getattr(self.core, "remainder", ""):
            raise ParseError("zmqlab tasks take nothing after '--' (got %r)" % self.core.remainder)
        for context in self.tasks:
            for arg in context.positional_args:
                value = arg.value
                if isinstance(value, str) and value.startswith("-") and value != "-":
                    # Invoke fills a missing positional with whatever comes next, even a
                    # mistyped flag: `sweep-gate --markdwon x` would read results='--markdwon'.
                    raise ParseError(self._unknown(value, context), context)

    @staticmethod
    def _unknown(token: str, context: ParserContext | None) -> str:
        task = context.name if context is not None and context.name else None
        if task is None:
            if token.startswith("-"):
                return "unknown option %r (%s --help lists them)" % (token, BINARY)
            return "unknown task %r (%s --list shows the tasks)" % (token, BINARY)
        if token.startswith("-") and token != "-":
            return "%s: unknown flag %r (%s --help %s lists its flags)" % (task, token.split("=")[0], BINARY, task)
        return "%s: unexpected argument %r (%s --help %s lists its flags)" % (task, token, BINARY, task)

    def explain(self, exc: ParseError) -> str:
        msg = one_line(str(exc))
        context = getattr(exc, "context", None)
        task = context.name if context is not None and context.name else None
        # An unknown token after a mistyped flag that was taken as a positional argument:
        # name the flag, not the token after it.
        if context is not None:
            for arg in context.positional_args:
                value = arg.value
                if isinstance(value, str) and value.startswith("-") and value != "-":
                    return self._unknown(value, context)
        m = re.fullmatch(r"No idea what '(.*)' is!", msg)
        if m:
            return self._unknown(m.group(1), context)
        m = re.fullmatch(r"'(.*)' did not receive required positional arguments: (.*)", msg)
        if m:
            names = [n.strip("' ").strip("_").replace("_", "-") for n in m.group(2).split(",")]
            return "%s is missing %s (give %s in order, or as %s; %s --help %s)" % (
                m.group(1), " and ".join(n.upper() for n in names), "them" if len(names) > 1 else "it",
                ", ".join("--" + n for n in names), BINARY, m.group(1))
        m = re.fullmatch(r"Flag <\w+: ([\w-]+)[^>]*> needed value and was not given one!", msg)
        if m:
            where = "%s: " % task if task else ""
            return "%s--%s needs a value" % (where, m.group(1).replace("_", "-"))
        m = re.fullmatch(r"Flag <\w+: ([\w-]+)[^>]*> doesn't take any value!", msg)
        if m:
            return "--%s takes no value" % m.group(1).replace("_", "-")
        return "%s: %s" % (task, msg) if task and not msg.startswith(task + ":") else msg

    def run(self, argv: Any = None, exit: bool = True) -> None:
        try:
            self.create_config()
            self.parse_core(argv)
            self.parse_collection()
            self.parse_tasks()
            self.parse_cleanup()
            self.update_config()
        except ParseError as exc:
            self.usage_error(self.explain(exc))
        except Exit as exc:
            if exc.message:                     # e.g. no tasks.py found, --list of a bad root
                self.usage_error(one_line(exc.message))
            sys.exit(exc.code)                  # --help, --list, --version
        except KeyboardInterrupt:
            sys.exit(128 + signal.SIGINT)
        try:
            self.execute()
        except UnexpectedExit as exc:           # tasks do not run shell commands; kept as Invoke does
            sys.exit(exc.result.exited)
        except Exit as exc:
            if exc.message:
                print(exc.message, file=sys.stderr)
            sys.exit(exc.code)
        except KeyboardInterrupt as exc:        # before a task's own handler was in place
            sys.exit(128 + getattr(exc, "signum", signal.SIGINT))

    @staticmethod
    def usage_error(text: str) -> None:
        sys.stderr.write("zmqlab: error: %s\n" % text)
        sys.exit(USAGE)


def main(argv: list[str] | None = None) -> None:
    try:
        LabProgram(name="zmqlab", binary=BINARY, binary_names=["zmqlab"]).run(argv)
    except BrokenPipeError:
        # stdout went away (`./zmqlab --list | head -1`): end quietly, as SIGPIPE would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(128 + signal.SIGPIPE)


if __name__ == "__main__":
    main()
