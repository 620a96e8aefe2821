"""``image-builder``: invoke's Program with make's ``-j`` as a core flag.

Plain invoke parses its core flags before it loads tasks.py, so a tasks file
cannot add ``-j``; invoke documents shipping a Program subclass for that.
``-j N`` before the first task name means ``INVOKE_BUILD_JOBS=N`` for this
run (invoke maps that variable onto the ``build.jobs`` setting the tasks
read); a bare ``-j`` means no limit, as in make.
"""

from __future__ import annotations

import difflib
import os
import re
import sys

from invoke import Argument, Exit, ParseError, Program
from invoke.parser import Parser
from invoke.util import Lexicon

import imagebuilder
from imagebuilder.config.options import parse_jobs
from imagebuilder.errors import EXIT_BAD_INPUT, InputError
from imagebuilder.running.stopping import exit_code_of

from .executor import BuildExecutor

JOBS_ENV = "INVOKE_BUILD_JOBS"
UNLIMITED = "0"


def split_core_jobs(argv: list[str], value_flags: set[str]) -> tuple[list[str], str | None]:
    """Take ``-j``/``--jobs`` (with an optional count) out of the core flags of ``argv``.

    Only the flags before the first task name are core flags; ``value_flags``
    are the core flags that consume the next token. Returns the remaining
    argv and the job count as a string (``"0"`` for a bare ``-j``), or None.
    A count that is not a whole number of 0 or more (``-j -1``, ``--jobs=x``)
    raises invoke's Exit with code 2.
    """
    out = argv[:1]
    jobs = None
    i = 1
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("-") or tok == "--":
            out += argv[i:]
            break
        if tok in ("-j", "--jobs"):
            nxt = argv[i + 1] if i + 1 < len(argv) else ""
            if re.fullmatch(r"[-+]?\d+(\.\d*)?", nxt):  # a count, good or not: 4, -1, 2.5
                jobs, i = _count(nxt), i + 2
            else:
                jobs, i = UNLIMITED, i + 1
            continue
        if tok.startswith("--jobs=") or (tok.startswith("-j") and not tok.startswith("--")):
            jobs = _count(tok.split("=", 1)[1] if tok.startswith("--jobs=")
                          else tok[2:].lstrip("="))
            i += 1
            continue
        out.append(tok)
        if tok in value_flags and "=" not in tok and i + 1 < len(argv):
            out.append(argv[i + 1])
            i += 1
        i += 1
    return out, jobs


def _count(value: str) -> str:
    """The job count of core ``-j``, checked; bad input is invoke's Exit with code 2."""
    try:
        return str(parse_jobs(value, "-j/--jobs", hint=", or -j alone"))
    except InputError as exc:
        raise Exit(f"error: {exc}", code=exc.exit_code) from None


def unknown_task_message(token: str, names: list[str]) -> str:
    """What to say about a task name invoke does not know: the closest ones."""
    close = difflib.get_close_matches(token, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return (f"error: {token!r} is not a target{hint} "
            "('invoke --list' lists them all, 'invoke help' explains them)")


class ImageBuilderProgram(Program):
    """invoke, plus ``-j [N]`` as a core flag; a mistyped target name gets the
    closest names and exit code 2 (bad input), as does any other command-line
    mistake."""

    def core_args(self) -> list[Argument]:
        return super().core_args() + [Argument(
            names=("jobs", "j"), kind=str, optional=True,
            help="Run up to N builds at once; -j alone: no limit (as in make). "
                 f"Same as {JOBS_ENV}=N.")]

    def normalize_argv(self, argv) -> None:
        super().normalize_argv(argv)
        flags = self.initial_context.flags
        value_flags = {name for name, arg in flags.items() if arg.takes_value and not arg.optional}
        self.argv, jobs = split_core_jobs(list(self.argv), value_flags)
        if jobs is not None:
            os.environ[JOBS_ENV] = jobs

    def _make_parser(self) -> Parser:
        # invoke deep-copies every task's flags into its parser: with 253 targets
        # of eight flags each that is most of `invoke --list`. A command line that
        # names no task (--list, --version, --help alone) needs none of them.
        if (self.core.unparsed or self.args.complete.value
                or isinstance(self.args.help.value, str)):
            return super()._make_parser()
        return Parser(initial=self.initial_context, contexts=Lexicon())

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as exc:
            unknown = re.fullmatch(r"No idea what '(.+)' is!", str(exc))
            if unknown and not unknown.group(1).startswith("-"):
                raise Exit(unknown_task_message(unknown.group(1),
                                                list(self.collection.task_names)),
                           code=EXIT_BAD_INPUT) from None
            raise Exit(f"error: {exc}", code=EXIT_BAD_INPUT) from None

    def run(self, argv=None, exit: bool = True) -> None:
        try:
            super().run(argv, exit)
        except KeyboardInterrupt as exc:  # invoke itself would exit 1
            sys.exit(exit_code_of(exc))
        except BrokenPipeError:  # `invoke --list | head`
            sys.stderr.close()
            sys.exit(0)


program = ImageBuilderProgram(name="image-builder", binary="image-builder",
                              binary_names=["image-builder", "invoke"],
                              version=imagebuilder.__version__, executor_class=BuildExecutor)


def main() -> None:
    program.run()
