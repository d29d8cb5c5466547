"""User-facing errors: each names the problem and the fix, and the CLI prints it as one line."""


class BenchError(Exception):
    """A problem with the user's input or environment that the user can fix."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}. Fix: {fix}")
        self.problem = problem
        self.fix = fix
