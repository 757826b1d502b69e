"""The live progress line of a search or an evaluation, and its time estimate.

On a terminal: one status line, redrawn in place with ``\\r`` (and every second, so the
clock moves); failures and retries are printed above it as lines of their own. Otherwise
(a log file, CI): one plain line per event, the status followed by what happened.
Every event also goes to the run folder's events.log through ``log``.
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
import threading
import time
from typing import Any, Callable, TextIO


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What the status line shows, taken from the job source after each event."""

    finished: int                 # units of ``total`` done (trained, failed or errored)
    total: int
    running: int                  # jobs out on the cluster now
    failed: int
    jobs_left: int                # jobs not yet started (0 with none running: "eta 0:00:00")
    noun: str = "runs"            # what ``total`` counts: "candidates", "runs"
    extra: tuple[str, ...] = ()   # e.g. "rejected 3", "best 12.5 (k1 ...)"


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600}:{rest // 60 % 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


class Eta:
    """The simple ETA (the planted benchmark's, and the display's until a command sets a
    forecast, search/runs/forecast.py): the jobs not started and the unfinished part of the running ones, at the
    mean slot time of the jobs finished in this session (driver-measured, overheads
    included; a job of a cohort of n takes 1/n of its slot, ``together``), or, before any
    has finished, at ``run_s`` (a probe's estimate), over ``slots`` jobs at a time."""

    error: str | None = None   # why seconds_left gave None, where known (a Forecast's failed plays)

    def __init__(self, run_s: float | None = None, slots: int = 1,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.run_s, self.slots, self.now = run_s, max(1, slots), now
        self._started: dict[str, tuple[float, int]] = {}   # key: (start, together)
        self._durations: list[float] = []                   # slot seconds of finished jobs

    def started(self, key: str, together: int = 1, job: Any = None) -> None:
        self._started[key] = (self.now(), max(1, together))

    def finished(self, key: str, steps: int | None = None) -> float | None:
        """Forget ``key``; its wall duration, when it started in this session."""
        start, together = self._started.pop(key, (None, 1))
        if start is None:
            return None
        wall = self.now() - start
        self._durations.append(wall / together)
        return wall

    @property
    def per_job_s(self) -> float | None:
        if self._durations:
            return sum(self._durations) / len(self._durations)
        return self.run_s

    def seconds_left(self, jobs_left: int) -> float | None:
        per = self.per_job_s
        if per is None:
            return None
        now = self.now()
        running = sum(max(0.0, per - (now - t) / n) for t, n in self._started.values())
        return (jobs_left * per + running) / self.slots


class Display:
    """Progress of one driver session (the clock counts from its start)."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None,
                 log: Callable[[str], None] | None = None,
                 now: Callable[[], float] = time.monotonic, eta: Eta | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.log = log
        self.now = now
        self.eta = eta or Eta(now=now)
        self.start = now()
        self.snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._drawn = False
        self._pending: str | None = None      # a settling event line (plain output)
        self._timer: threading.Timer | None = None
        self._eta_error: str | None = None    # the forecast error logged last

    # ------------------------------------------------------------- text
    def eta_text(self, snap: Snapshot) -> str:
        if snap.jobs_left == 0 and snap.running == 0:
            return "eta 0:00:00"
        left = self.eta.seconds_left(snap.jobs_left)
        if left is None:
            self._why_no_eta()
            return "eta ?"
        return f"eta {clock(left)}"

    def _why_no_eta(self) -> None:
        """Log why a forecast gave no estimate (its ``error``), once per distinct reason."""
        error = self.eta.error
        if error and error != self._eta_error:
            self._eta_error = error
            if self.log:
                self.log(f"eta: no estimate ({error})")

    def status_line(self, snap: Snapshot) -> str:
        parts = [f"[{clock(self.now() - self.start)}] {snap.noun} {snap.finished}/{snap.total}",
                 f"running {snap.running}", f"failed {snap.failed}", *snap.extra,
                 self.eta_text(snap)]
        return " | ".join(parts)

    # ------------------------------------------------------------- output
    def info(self, line: str) -> None:
        """A plain message (what was chosen, where results go), after any event line
        still settling (so the lines stay in the order things happened)."""
        with self._lock:
            if not self.tty:
                self._print_pending()
            self._clear()
            print(line, file=self.stream, flush=True)
            self._draw()
        if self.log:
            self.log(line)

    def update(self, snap: Snapshot, event: str | None = None, important: bool = False,
               quiet: bool = False, settle_s: float = 0.0) -> None:
        """New counts after ``event``; ``important`` events stay on screen on a terminal;
        ``quiet`` ones (a job started) only redraw the terminal line.

        ``settle_s``: off a terminal, print the event's line only once the next update
        comes (or that many seconds pass), with the counts then: a result frees a slot that
        the next job fills a moment later, and "running" should count it."""
        with self._lock:
            self.snapshot = snap
            if not self.tty:
                self._print_pending()
            if quiet and not self.tty:
                return
            if not self.tty and settle_s > 0 and event:
                self._pending = event
                self._timer = threading.Timer(settle_s, self._settled)
                self._timer.daemon = True
                self._timer.start()
            elif self.tty:
                if important and event:
                    self._clear()
                    print(event, file=self.stream, flush=True)
                self._draw()
            else:
                text = self.status_line(snap) + (f" | {event}" if event else "")
                print(text, file=self.stream, flush=True)
        if self.log and event and not quiet:
            self.log(event)

    def _print_pending(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending is not None and self.snapshot is not None:
            print(self.status_line(self.snapshot) + f" | {self._pending}", file=self.stream,
                  flush=True)
        self._pending = None

    def _settled(self) -> None:
        with self._lock:
            self._timer = None
            self._print_pending()

    def _draw(self) -> None:
        if not self.tty or self.snapshot is None:
            return
        width = shutil.get_terminal_size((120, 20)).columns - 1
        line = self.status_line(self.snapshot)
        if len(line) > width:
            line = line[:max(10, width - 3)] + "..."
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False

    # ------------------------------------------------------------- ticking clock
    def __enter__(self) -> "Display":
        self.start = self.now()  # the clock counts the session's work, not its start-up
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, name="progress-display", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        with self._lock:
            self._print_pending()
            if self.tty and self._drawn:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                self._draw()
