"""Several build targets named on one command line run as one make-style batch.

``make -j2 A B`` builds A and B side by side; invoke runs the tasks it is
given one after another. When every task named is a build target and they
all got the same flags, this executor hands them to one run instead, so the
-j cap, the summary and Ctrl-C cover them together. Anything else runs as
invoke always runs it.
"""

from __future__ import annotations

from invoke import Executor


class BuildExecutor(Executor):
    def execute(self, *tasks):
        calls = self.normalize(tasks)
        batch = [c for c in calls if getattr(c.task, "ib_batch", None)]
        if len(batch) < 2 or len(batch) != len(calls) \
                or any(c.kwargs != batch[0].kwargs for c in batch):
            return super().execute(*tasks)
        first = batch[0]
        # What invoke does before each task: collection config, then the shell
        # environment (INVOKE_BUILD_JOBS, which -j sets).
        self.config.load_collection(self.collection.configuration(first.called_as))
        self.config.load_shell_env()
        context = first.make_context(self.config, core_parse_result=self.core)
        targets = [c.task.ib_target for c in batch]
        return {first.task: first.task.ib_batch(context, targets, **first.kwargs)}
