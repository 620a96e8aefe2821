"""One command line, one set of flags: how the tasks named together are run.

``make -j2 A B`` builds A and B side by side; invoke runs the tasks it is
given one after another, each with the flags written after it. This executor
makes a command line mean what it says to a make user:

- the build flags (``--dry-run``, ``--force``...: the options table) are one
  set for the whole command line. Written once after the last target, they
  apply to every target (``invoke A B --force`` forces both); targets given
  different flags are refused, nothing started;
- a dry run anywhere (``--dry-run`` or invoke's core ``-R/--dry``) makes every
  task a dry run, and a task that has none (``clean-*``, ``deploy-ova``...) is
  refused, nothing started: nothing real ever starts when a dry run was asked;
- several build targets (and ``-all`` tasks) of one action run as one batch:
  one ``-j`` cap, one summary, one Ctrl-C.

Anything else runs as invoke always runs it. The tasks say what they are with
attributes tasks.py sets: ``ib_flags`` (the options-table flags they take),
``ib_targets`` and ``ib_batch`` (batchable), ``ib_harmless`` (changes nothing).
"""

from __future__ import annotations

from invoke import Executor, Exit

from imagebuilder.config.options import BY_ATTR
from imagebuilder.errors import EXIT_BAD_INPUT


def _given(call) -> dict[str, object]:
    """The options-table flags a call was given (those not at their default)."""
    return {k: v for k, v in call.kwargs.items()
            if k in getattr(call.task, "ib_flags", ()) and v != BY_ATTR[k].default}


def _shown(given: dict[str, object]) -> str:
    flags = [f"--{BY_ATTR[k].name}" + ("" if BY_ATTR[k].is_switch else f" {v}")
             for k, v in given.items()]
    return " ".join(flags) or "no flags"


def shared_flags(calls: list) -> dict[str, object]:
    """The one set of flags of a command line's build tasks: the same on each, or written
    only after the last of them. Raises Exit (2) when they differ."""
    flagged = [c for c in calls if getattr(c.task, "ib_flags", None)]
    givens = [_given(c) for c in flagged]
    if all(g == givens[-1] for g in givens) if givens else True:
        return givens[-1] if givens else {}
    if not any(givens[:-1]):
        return givens[-1]
    differ = "; ".join(f"{c.called_as}: {_shown(g)}" for c, g in zip(flagged, givens))
    raise Exit(f"error: flags differ between targets: {differ}. A command line has one set "
               "of flags: write them once, after the last target (they apply to every "
               "target), or run the targets separately; nothing was started",
               code=EXIT_BAD_INPUT)


def apply_flags(calls: list, shared: dict[str, object], dry: bool) -> None:
    """Give every build task the shared flags (those it takes), a dry run when ``dry``;
    refuse (Exit 2) a dry run for a task that has none."""
    if dry:
        shared = dict(shared, dry_run=True)
        real = [c.called_as for c in calls if "dry_run" not in getattr(c.task, "ib_flags", ())
                and not getattr(c.task, "ib_harmless", False)]
        if real:
            raise Exit(f"error: a dry run was asked (--dry-run or -R/--dry), but "
                       f"{', '.join(real)} {'has' if len(real) == 1 else 'have'} none; "
                       "nothing was started (run it on its own, without the dry run)",
                       code=EXIT_BAD_INPUT)
    for call in calls:
        flags = getattr(call.task, "ib_flags", ())
        call.kwargs.update({k: v for k, v in shared.items() if k in flags})


def one_batch(calls: list) -> list:
    """The calls, when they are two or more build targets (or ``-all`` tasks) of one
    action: one batch. Otherwise none: invoke runs them one after another."""
    batch = [c for c in calls if getattr(c.task, "ib_batch", None)]
    if len(batch) < 2 or len(batch) != len(calls) \
            or len({c.task.ib_action for c in batch}) != 1:
        return []
    return batch


class BuildExecutor(Executor):
    """invoke's executor with one set of build flags per command line (see above)."""

    def execute(self, *tasks):
        """Run the tasks of one command line: refuse mixed flags and real work under a dry
        run before anything starts; several build targets of one action as one batch."""
        calls = self.normalize(tasks)
        dry = bool(self.config.run.dry)
        shared = shared_flags(calls)
        apply_flags(calls, shared, dry or bool(shared.get("dry_run")))
        batch = one_batch(calls)
        if not batch:
            return super().execute(*[(c.called_as, c.kwargs) for c in calls])
        first = batch[0]
        # What invoke does before each task: collection config, then the shell
        # environment (INVOKE_BUILD_JOBS, which -j sets).
        self.config.load_collection(self.collection.configuration(first.called_as))
        self.config.load_shell_env()
        context = first.make_context(self.config, core_parse_result=self.core)
        targets = list(dict.fromkeys(t for c in batch for t in c.task.ib_targets()))
        kwargs = {k: v for c in batch for k, v in c.kwargs.items() if k in c.task.ib_flags}
        return {first.task: first.task.ib_batch(context, targets, **kwargs)}
