"""Training progress where the user is: while papermill runs a params set (`nowcast run`, a SLURM
array task), a background thread reads the run's progress record (nowcast/progress.py) and
prints a line when it changes: one line updated in place on a terminal, plain lines elsewhere
(a log file gets one at each stage change and at most one per `every` seconds in between).
The executed notebook keeps the full output of the run either way.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

from .. import results
from ..paths import JobPaths
from ..progress import CLEAR_LINE, line

POLL_S = 0.5          # how often the record is read
PLAIN_EVERY_S = 30.0  # plain lines (not a terminal): at most one per this many seconds per stage


class ProgressLines:
    """A context manager: from enter to exit, show the progress of run `job_id` under `root`
    (its in-progress folder, else its final one). enabled=False: does nothing."""

    def __init__(self, root: str | Path, job_id: str, label: str, enabled: bool = True,
                 stream: Optional[TextIO] = None, poll: float = POLL_S,
                 every: float = PLAIN_EVERY_S, clock: Callable[[], float] = time.time) -> None:
        self.paths = [JobPaths.running(root, job_id).progress,
                      JobPaths.completed(root, job_id).progress]
        self.label, self.enabled, self.poll, self.every, self.clock = label, enabled, poll, every, clock
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._shown: tuple = ()        # (stage, step, loss, val_loss) last printed
        self._text = ""                # the text last printed
        self._printed_at = -float("inf")

    def __enter__(self) -> "ProgressLines":
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name="nowcast-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self.show(final=True)  # the record as training left it, read before the folder moves
        if self.tty and self._text:
            self.stream.write("\n")
            self.stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            self.show()

    def _record(self) -> dict:
        for path in self.paths:
            record = results.read_json(path)
            if record:
                return record
        return {}

    def show(self, final: bool = False) -> None:
        """Print the record if it changed (and, for plain lines, if it is time to)."""
        record = self._record()
        if not record:
            return
        now = self.clock()
        text = line(self.label, record, now)
        key = tuple(record.get(k) for k in ("stage", "step", "loss", "val_loss"))
        if self.tty:
            if text != self._text:
                self.stream.write(f"\r  {text}{CLEAR_LINE}")
                self.stream.flush()
                self._text = text
            return
        new_stage = not self._shown or key[0] != self._shown[0]
        due = final or new_stage or now - self._printed_at >= self.every
        if key != self._shown and due:
            self.stream.write(f"  {text}\n")
            self.stream.flush()
            self._shown, self._text, self._printed_at = key, text, now
