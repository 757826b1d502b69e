"""The settings of an evolution: strategy, budget, seeds, rungs, operator rates."""
from __future__ import annotations

import dataclasses
from typing import Any

from search.evolution.operators import OPERATORS, genome_from_text
from search.evolution.strategies import STRATEGIES


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    strategy: str = "generational"        # "generational" | "steady" | "random"
    population: int = 100
    budget: int = 100                     # distinct genomes to train
    seeds_per_candidate: int = 1
    # Early stopping (search/evolution/rungs.py): env steps where a candidate seed after the
    # first generation may be stopped, keeping the top 1/reduction at each.
    rungs: tuple[int, ...] = ()
    reduction: float = 3.0
    finalist_seeds: int = 0               # extra full-length seeds once a candidate reaches the top
    survivor_fraction: float = 0.25
    tournament: int = 5                   # steady: tournament size
    # Relative operator rates (normalised when drawn), tuned on the planted benchmark.
    p_bitflip: float = 0.45
    p_crossover: float = 0.3
    p_horizon: float = 0.1
    p_metric: float = 0.1
    p_fresh: float = 0.05
    seed_losses: tuple[str, ...] = ()     # named losses or canonical genomes, first in the initial population
    seed: int = 0
    init_density: float = 0.3             # chance of each mask bit in a random genome
    max_attempts: int = 100               # refused children in a row before a fresh random genome

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ValueError:
            return ValueError(f"{name}: expected {want}, got {getattr(self, name)!r}")

        if self.strategy not in STRATEGIES:
            raise bad("strategy", f"one of {', '.join(STRATEGIES)}")
        for name, low in (("population", 2), ("budget", 1), ("seeds_per_candidate", 1),
                          ("finalist_seeds", 0), ("tournament", 1), ("max_attempts", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad(name, f"an integer >= {low}")
        if not 0 < self.survivor_fraction < 1:
            raise bad("survivor_fraction", "a number in (0, 1)")
        if not 0 < self.init_density <= 1:
            raise bad("init_density", "a number in (0, 1]")
        if any(not rate >= 0 for rate in self.rates.values()) or sum(self.rates.values()) <= 0:
            raise ValueError(f"operator rates: expected numbers >= 0, not all 0, got {self.rates}")
        object.__setattr__(self, "seed_losses", tuple(self.seed_losses))
        if len(self.seed_losses) > self.population:
            raise bad("seed_losses", f"at most population={self.population} losses")
        for text in self.seed_losses:
            genome_from_text(text)  # raises GenomeError (a ValueError), one line
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise bad("seed", "an integer")
        object.__setattr__(self, "rungs", tuple(self.rungs))
        if any(isinstance(r, bool) or not isinstance(r, int) or r <= 0 for r in self.rungs) or \
                list(self.rungs) != sorted(set(self.rungs)):
            raise bad("rungs", "increasing environment steps > 0")
        if self.rungs and self.seeds_per_candidate != 1:
            raise bad("seeds_per_candidate", "1 with rungs (the one candidate seed climbs the "
                      "rungs; --finalist_seeds adds seeds to those that reach the top)")
        if isinstance(self.reduction, bool) or not isinstance(self.reduction, (int, float)) or \
                not self.reduction > 1:
            raise bad("reduction", "a number > 1")

    @property
    def rates(self) -> dict[str, float]:
        return {name: getattr(self, f"p_{name}") for name in OPERATORS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EngineConfig":
        """Also reads the configs of before the rungs (format 1 engine states and search
        configs): their ``elite_reevals`` is gone, and only 0 (none) still means the same."""
        data = dict(data)
        elites = data.pop("elite_reevals", 0)
        if elites:
            raise ValueError(f"it re-ran the top {elites} genomes on fresh seeds after the budget "
                             f"(elite_reevals), which this code replaced by finalist seeds and a "
                             f"held-out verdict; continue it with the code it was started with")
        data["seed_losses"] = tuple(data.get("seed_losses", ()))
        data["rungs"] = tuple(data.get("rungs", ()))
        return cls(**data)
