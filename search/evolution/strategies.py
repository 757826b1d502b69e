"""How the population turns over: which genome may be born next, and from which parents.

A strategy never draws genomes itself; it tells the engine the next birth's generation
and how to pick parents (or that the engine must wait for results), and it hears about
births and completed evaluations. Its state is plain JSON.
"""
from __future__ import annotations

import abc
import dataclasses
import random
from typing import Callable, Mapping

from search.evolution.records import GenomeRecord

Records = Mapping[str, GenomeRecord]
Picker = Callable[[random.Random, int], list[str]]


@dataclasses.dataclass(frozen=True)
class Slot:
    """The next birth: its generation, and `pick(rng, n)` returning n parent ids; with
    `pick=None` the birth belongs to the initial population (seed losses, random)."""

    generation: int
    pick: Picker | None = None
    parents_available: int = 0


class Strategy(abc.ABC):
    def __init__(self, population: int, survivor_fraction: float, tournament: int) -> None:
        self.population = population
        self.survivor_fraction = survivor_fraction
        self.tournament = tournament

    @abc.abstractmethod
    def slot(self, born: int, outstanding: int, records: Records) -> Slot | None:
        """The next birth (``born`` genomes trained so far), or None to wait for results."""

    def on_born(self, genome_id: str, records: Records) -> None:
        """A genome was handed out for training."""

    def on_complete(self, genome_id: str, records: Records) -> None:
        """All candidate seeds of a genome were told."""

    def sizes(self, budget: int) -> list[int] | None:
        """Genomes per generation under ``budget``, where generations wait for each other."""
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Generational(Strategy):
    """The paper's stages (SPEC section 4): train a generation, keep the top quarter
    (they stay in the next generation without retraining), fill the rest with their
    children. The next generation starts only once every result is in (the barrier)."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.generation = 0
        self.members: list[str] = []     # this generation: survivors, then children
        self.survivors: list[str] = []

    @property
    def n_survivors(self) -> int:
        return min(self.population - 1, max(1, round(self.survivor_fraction * self.population)))

    def sizes(self, budget: int) -> list[int]:
        """The genomes each generation trains under ``budget``: a last one smaller than the
        others trains alone behind its barrier, with slots idle."""
        sizes = [min(self.population, budget)]
        left = budget - sizes[0]
        while left > 0:
            sizes.append(min(self.population - self.n_survivors, left))
            left -= sizes[-1]
        return sizes

    def slot(self, born: int, outstanding: int, records: Records) -> Slot | None:
        if len(self.members) >= self.population:
            if outstanding:
                return None
            ranked = sorted(self.members, key=lambda i: (*records[i].order, records[i].birth))
            self.survivors = ranked[:self.n_survivors]
            self.members = list(self.survivors)
            self.generation += 1
        if self.generation == 0:
            return Slot(0)
        survivors = self.survivors

        def pick(rng: random.Random, n: int) -> list[str]:
            return rng.sample(survivors, n) if n <= len(survivors) else [rng.choice(survivors)] * n

        return Slot(self.generation, pick, len(survivors))

    def on_born(self, genome_id: str, records: Records) -> None:
        self.members.append(genome_id)

    def state_dict(self) -> dict:
        return {"generation": self.generation, "members": list(self.members),
                "survivors": list(self.survivors)}

    def load_state_dict(self, state: dict) -> None:
        self.generation = state["generation"]
        self.members = list(state["members"])
        self.survivors = list(state["survivors"])


class Steady(Strategy):
    """Aging (regularized) evolution, Real et al. 2019: no barrier; after the initial
    population each child's parents win a tournament among the evaluated population, and
    the oldest member leaves when a newly evaluated genome overflows it. Aging rather than
    dropping the worst keeps one lucky evaluation from ruling forever."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.alive: list[str] = []       # evaluated members, oldest (lowest birth) first

    def slot(self, born: int, outstanding: int, records: Records) -> Slot | None:
        generation = born // self.population
        if born < self.population:
            return Slot(generation)
        if not self.alive:
            return None
        alive = self.alive

        def pick(rng: random.Random, n: int) -> list[str]:
            chosen: list[str] = []
            for _ in range(n):
                pool = [i for i in alive if i not in chosen] or alive
                contenders = rng.sample(pool, min(self.tournament, len(pool)))
                chosen.append(min(contenders, key=lambda i: records[i].order))
            return chosen

        return Slot(generation, pick, len(alive))

    def on_complete(self, genome_id: str, records: Records) -> None:
        self.alive.append(genome_id)
        self.alive.sort(key=lambda i: records[i].birth)
        del self.alive[:max(0, len(self.alive) - self.population)]

    def state_dict(self) -> dict:
        return {"alive": list(self.alive)}

    def load_state_dict(self, state: dict) -> None:
        self.alive = list(state["alive"])


class RandomSearch(Strategy):
    """The baseline: every genome is a fresh random valid one."""

    def slot(self, born: int, outstanding: int, records: Records) -> Slot | None:
        return Slot(born // self.population)


STRATEGIES: dict[str, type[Strategy]] = {
    "generational": Generational, "steady": Steady, "random": RandomSearch}
