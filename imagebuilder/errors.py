"""The one error type for user-facing failures, and the process exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class ImageBuilderError(Exception):
    """A failure the user can act on.

    The message names the file, field or object at fault and what to do.
    ``exit_code`` is 2 for bad input (nothing was started) and 1 for a build
    that failed once under way. ``problems`` holds one line per problem when
    several were found at once.
    """

    def __init__(self, message: str, exit_code: int = EXIT_BUILD_FAILED,
                 problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.problems = list(problems or [])

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        return "\n".join([self.message] + [f"  - {p}" for p in self.problems])


class InputError(ImageBuilderError):
    """Bad input found before anything ran (exit code 2)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message, EXIT_BAD_INPUT, problems)


class BuildError(ImageBuilderError):
    """A build that failed once under way (exit code 1)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message, EXIT_BUILD_FAILED, problems)
