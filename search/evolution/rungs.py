"""Early stopping at rungs: asynchronous successive halving (ASHA, Li et al. 2020) over a
candidate's learning curve, with its records in the engine's state so --resume keeps them.

A rung is an environment step below the top at which a candidate's trial reports its
approximate AULC so far. Every candidate's first seed is recorded at every rung it
reaches; one that may be stopped continues only if its AULC is in the top
``1/reduction`` of all recorded at that rung so far (while fewer than ``reduction`` are
recorded, everyone continues, as Ray Tune's ASHA does). Unlike Tune's ASHA, whose rungs
live in the scheduler's memory, these are plain JSON in engine.json, keyed by
(genome, seed), and a trial run again after a crash or a resume overwrites its own entry.
"""
from __future__ import annotations

import math
from typing import Any


class Rungs:
    def __init__(self, steps: tuple[int, ...] = (), reduction: float = 3.0) -> None:
        self.steps = tuple(steps)
        self.reduction = reduction
        self.values: dict[int, dict[str, float]] = {s: {} for s in self.steps}

    def __bool__(self) -> bool:
        return bool(self.steps)

    def record(self, key: str, step: int, aulc: float) -> None:
        if step in self.values and math.isfinite(aulc):
            self.values[step][key] = float(aulc)

    def cutoff(self, step: int) -> float | None:
        """The AULC a trial needs at ``step`` to go on; None: too few recorded to judge."""
        recorded = sorted(self.values.get(step, {}).values())
        if len(recorded) < self.reduction:
            return None
        # the (1 - 1/reduction) quantile, linear interpolation (numpy's default)
        position = (1 - 1 / self.reduction) * (len(recorded) - 1)
        low = math.floor(position)
        high = min(low + 1, len(recorded) - 1)
        return recorded[low] + (recorded[high] - recorded[low]) * (position - low)

    def keep(self, key: str, step: int, aulc: float) -> bool:
        """Record the trial's AULC at ``step`` and say whether it goes on."""
        if step not in self.values:
            return True
        if not math.isfinite(aulc):
            return False
        self.record(key, step, aulc)
        cut = self.cutoff(step)
        return cut is None or aulc >= cut

    def state_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "reduction": self.reduction,
                "values": {str(s): dict(v) for s, v in self.values.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for step, values in state.get("values", {}).items():
            if int(step) in self.values:
                self.values[int(step)] = {k: float(v) for k, v in values.items()}
