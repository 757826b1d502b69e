"""Metrics to ``eval.csv`` / ``train.csv`` (pandas reads them) and TensorBoard (``--save_tb``).

The agent's update returns a metrics dict; only the training loop logs (drqv2 style).
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Mapping

from rl.run_dir import write_csv


class CsvLog:
    """Append-only CSV, flushed per row. Its columns are those of the first row, widened
    when a later row brings a new key (the file is then rewritten once, atomically, with
    the wider header; earlier rows leave the new columns empty)."""

    def __init__(self, path: Path, columns: list[str] | None = None):
        self.path, self.columns = path, list(columns or [])
        self._file = None
        self._writer: csv.DictWriter | None = None

    def write(self, row: Mapping[str, object]) -> None:
        new = [k for k in row if k not in self.columns]
        if self._writer is None or new:
            self._reopen(self.columns + new)
        self._writer.writerow(row)
        self._file.flush()

    def _reopen(self, columns: list[str]) -> None:
        """(Re)write the header and every row so far under ``columns``; append after it."""
        rows = []
        if self._file is not None:
            self._file.close()
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
        write_csv(self.path, rows, columns)
        self.columns = columns
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=columns)

    def close(self) -> None:
        """Close the file; one never written gets its header (if it has columns)."""
        if self._writer is None and self.columns:
            self._reopen(self.columns)
        if self._file:
            self._file.close()


class Logger:
    """Writes nothing when ``run_dir`` is None (a search candidate without a folder)."""

    def __init__(self, run_dir: str | os.PathLike | None, save_tb: bool = False):
        self.run_dir = Path(run_dir) if run_dir else None
        self._eval = self._train = None
        self._tb = None
        if self.run_dir:
            self._eval = CsvLog(self.run_dir / "eval.csv", ["env_step", "episode_return",
                                                             "episode_returns", "eval_s"])
            self._train = CsvLog(self.run_dir / "train.csv", ["env_step", "episode",
                                 "episode_return", "duration_s", "steps_per_s"])
            if save_tb:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(self.run_dir / "tb"))

    def eval(self, env_step: int, returns: list[float], eval_s: float) -> None:
        mean = sum(returns) / len(returns)
        if self._eval:
            self._eval.write({"env_step": env_step, "episode_return": mean,
                              "episode_returns": ";".join(f"{r:.3f}" for r in returns),
                              "eval_s": round(eval_s, 3)})
        if self._tb:
            self._tb.add_scalar("eval/episode_reward", mean, env_step)
            self._tb.flush()

    def train(self, row: Mapping[str, float]) -> None:
        """One row per training episode: its return and the means of the update metrics
        (losses over every update of the episode, diagnostics over its ``log_interval``
        steps). Keys first seen later (the warm-up rows have no update metrics) widen
        the columns."""
        if self._tb:
            for key, value in row.items():
                if key != "env_step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"train/{key}", value, row["env_step"])
        if self._train:
            self._train.write(row)

    def close(self) -> None:
        for log in (self._train, self._eval):
            if log:
                log.close()
        if self._tb:
            self._tb.close()
