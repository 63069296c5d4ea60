"""The exception types users see: a one-line message naming the file, key or value at fault,
and the one way such a line is cut from a longer message (`first_line`, `described`); and
the exit statuses that say how a command ended."""

import math

EXIT_BAD_INPUT = 2  # a NowcastError: its one line on stderr
EXIT_STOPPED = 3    # stopped with a checkpoint, resumable, not requeued (Ctrl-C, scancel, disk full)
EXIT_REQUEUE = 75   # stopped with a checkpoint by SLURM's warning signal: requeue me (EX_TEMPFAIL)


def first_line(what, fallback: str | None = None) -> str:
    """The first line of an error's message (or of a text), stripped: what a one-line report
    shows. With no text: `fallback` if given, else an error's type name (a text's: "")."""
    text = str(what).strip()
    if text:
        return text.splitlines()[0].strip()
    if fallback is not None:
        return fallback
    return type(what).__name__ if isinstance(what, BaseException) else ""


def one_line(text) -> str:
    """A message as one printable line: a newline, tab or terminal escape in it (a value the
    user typed, echoed back) is shown as its escape (`\\n`, `\\x1b`), never obeyed."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in str(text))


def described(error: BaseException) -> str:
    """An error in one line: `TypeName: the first line of its message`, or the type alone."""
    line = first_line(error, "")
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


class NowcastError(Exception):
    """Bad input or an impossible request. The CLI prints it on one line and exits 2; in a
    Jupyter kernel (papermill's) the cell shows that line in place of a traceback."""

    def _render_traceback_(self) -> list[str]:
        # IPython's hook for errors that bring their own traceback: the cell's error output,
        # and papermill's exception quoting it, then end with the one line that matters
        return [f"nowcast: error: {one_line(self)}"]


class MissingDependency(NowcastError):
    """A module that this feature needs is not installed (raised by util.optional_import)."""

    def __init__(self, module: str, extra: str, reason: str = ""):
        self.module, self.extra = module, extra
        super().__init__(f"{module} is needed here but cannot be imported"
                         + (f" ({reason})" if reason else "") + f"; install nowcast[{extra}]")


class RunStopped(Exception):
    """The run stopped before its end and its folder stays resumable: not a failure.

    `reason` is what status.json records as `stopped_by` (results.mark_preempted): `preemption`
    (SLURM's warning signal: the task asks to be requeued), `cancel` (SIGTERM, scancel),
    `interrupt` (Ctrl-C), `write_error` (a checkpoint could not be written) or `request`.
    """

    reason = "request"

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason


def check_finite(value, what: str) -> float:
    """value as a float; NowcastError naming `what` when it is NaN or infinite (a run whose
    losses are not numbers is failed, never completed)."""
    value = float(value)
    if not math.isfinite(value):
        raise NowcastError(f"training diverged: the {what} is {value} (try a lower initial_lr "
                           f"or grad_clip)")
    return value
