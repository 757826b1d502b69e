"""The live progress line of a search.

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
from typing import Any, Callable, Iterable, TextIO


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What the status line shows, taken from the engine after each event."""

    trained: int
    running: int
    failed: int
    rejected: int        # refused by the rejection protocol or as duplicates
    budget: int
    best_fitness: float | None = None
    best_genome: str | None = None

    @classmethod
    def of(cls, engine: Any) -> "Snapshot":
        rows = engine.rows()
        statuses = [row["status"] for row in rows]
        best = max((r for r in rows if r["status"] == "trained" and r["fitness"] is not None),
                   key=lambda r: r["fitness"], default=None)
        return cls(trained=statuses.count("trained"), running=len(engine.in_flight()),
                   failed=statuses.count("failed"),
                   rejected=statuses.count("rejected") + statuses.count("duplicate"),
                   budget=engine.config.budget,
                   best_fitness=None if best is None else float(best["fitness"]),
                   best_genome=None if best is None else best["genome"])

    @property
    def done(self) -> int:
        return self.trained + self.failed


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Display:
    """Progress of one driver session (elapsed time and the estimate count from its start)."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None,
                 log: Callable[[str], None] | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.log = log
        self.now = now
        self.start = now()
        self.snapshot: Snapshot | None = None
        self._done_at_start: int | None = None
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._drawn = False

    # ------------------------------------------------------------- text
    def eta(self, snap: Snapshot) -> str:
        """Remaining genomes at this session's rate so far (concurrency is in the rate)."""
        done_here = snap.done - (self._done_at_start or 0)
        remaining = max(0, snap.budget - snap.done)
        if remaining == 0:
            return "eta 0:00:00" if not snap.running else "eta finishing"
        if done_here <= 0:
            return "eta ?"
        return f"eta {clock(remaining * (self.now() - self.start) / done_here)}"

    def status_line(self, snap: Snapshot) -> str:
        best = "best -" if snap.best_fitness is None else \
            f"best {snap.best_fitness:.4g} ({snap.best_genome})"
        return (f"[{clock(self.now() - self.start)}] trained {snap.trained}/{snap.budget} | "
                f"running {snap.running} | failed {snap.failed} | rejected {snap.rejected} | "
                f"{best} | {self.eta(snap)}")

    # ------------------------------------------------------------- output
    def info(self, line: str) -> None:
        """A plain message (what was chosen, where results go)."""
        with self._lock:
            self._clear()
            print(line, file=self.stream, flush=True)
            self._draw()
        if self.log:
            self.log(line)

    def update(self, snap: Snapshot, event: str | None = None, important: bool = False,
               quiet: bool = False) -> None:
        """New counts after ``event``; ``important`` events stay on screen on a terminal;
        ``quiet`` ones (a trial started) only redraw the terminal line."""
        if self._done_at_start is None:
            self._done_at_start = snap.done
        with self._lock:
            self.snapshot = snap
            if quiet and not self.tty:
                return
            if self.tty:
                if important and event:
                    self._clear()
                    print(event, file=self.stream, flush=True)
                self._draw()
            else:
                text = self.status_line(snap) + (f" | {event}" if event else "")
                print(text, file=self.stream, flush=True)
        if self.log and event and not quiet:
            self.log(event)

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
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, name="search-display", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        with self._lock:
            if self.tty and self._drawn:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                self._draw()


def summary(rows: Iterable[dict[str, Any]], top: int = 3) -> list[str]:
    """The best few trained genomes, for the end of a search."""
    trained = sorted((r for r in rows if r["status"] == "trained" and r["fitness"] is not None),
                     key=lambda r: -r["fitness"])
    return [f"  {i + 1}. {r['id']} fitness {r['fitness']:.4g}  {r['genome']}"
            for i, r in enumerate(trained[:top])]
