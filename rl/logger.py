"""Metrics to ``eval.csv`` / ``train.csv`` (pandas reads them) and TensorBoard (``--save_tb``).

The agent's update returns a metrics dict; only the training loop logs (drqv2 style).
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Mapping


class CsvLog:
    """Append-only CSV whose columns are fixed by the first row written (flushed per row)."""

    def __init__(self, path: Path, columns: list[str] | None = None):
        self.path, self.columns = path, columns
        self._file = None
        self._writer: csv.DictWriter | None = None

    def write(self, row: Mapping[str, object]) -> None:
        if self._writer is None:
            self.columns = self.columns or list(row)
            self._file = open(self.path, "w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
            self._writer.writeheader()
        self._writer.writerow(row)
        self._file.flush()

    def write_header(self, columns: list[str]) -> None:
        self.columns = columns
        with open(self.path, "w", newline="") as f:
            csv.DictWriter(f, fieldnames=columns).writeheader()

    def close(self) -> None:
        if self._file:
            self._file.close()


class Logger:
    """Writes nothing when ``run_dir`` is None (a search candidate without a folder)."""

    def __init__(self, run_dir: str | os.PathLike | None, save_tb: bool = False):
        self.run_dir = Path(run_dir) if run_dir else None
        self._eval = self._train = None
        self._tb = None
        self._pending_train: list[dict] = []
        if self.run_dir:
            self._eval = CsvLog(self.run_dir / "eval.csv", ["env_step", "episode_return",
                                                             "episode_returns", "eval_s"])
            self._train = CsvLog(self.run_dir / "train.csv")
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
        """One row per training episode: its return and the mean of the update metrics.

        The header is the union of keys seen in the first row that holds update metrics,
        so the rows of the random-action warm-up are held back until then.
        """
        if self._tb:
            for key, value in row.items():
                if key != "env_step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"train/{key}", value, row["env_step"])
        if not self._train:
            return
        self._pending_train.append(dict(row))
        if len(row) > _BASE_TRAIN_COLUMNS or self._train.columns:
            self._flush_train()

    def _flush_train(self) -> None:
        if not self._train.columns and self._pending_train:
            keys = list(self._pending_train[0])
            for r in self._pending_train:
                keys += [k for k in r if k not in keys]
            self._train.columns = keys
        for r in self._pending_train:
            self._train.write(r)
        self._pending_train.clear()

    def close(self) -> None:
        if self._train:
            self._flush_train()
            if self._train.columns is None:  # no episode ended: still leave a readable file
                self._train.write_header(_BASE_COLUMNS)
            self._train.close()
        if self._eval:
            self._eval.close()
        if self._tb:
            self._tb.close()


_BASE_COLUMNS = ["env_step", "episode", "episode_return", "duration_s", "steps_per_s"]
_BASE_TRAIN_COLUMNS = len(_BASE_COLUMNS)
