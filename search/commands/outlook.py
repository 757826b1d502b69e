"""What a search's forecast (search/runs/forecast.py) plays: the selection as a copy of
its engine (barriers, rungs, finalist seeds as the engine decides them), then the verdict
named from the copy's own records, in the order search.py hands it out; once the verdict
runs, its runs not started yet. And the start-up probes that give the durations.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import random
from typing import Any, Iterable, Sequence

from rl.config import TrainConfig
from search.commands.presets import SearchSetup
from search.evaluation.session import handout_order, run_job
from search.evaluation.verdict import Named, name_winners, verdict_plan
from search.evolution.engine import Engine
from search.runs.forecast import Clock, Durations, ListSource, PROBE_FACTOR, cost_key
from search.runs.jobs import Job, Outcome
from search.runs.phases import Phases
from search.runs.session import trial_job

MAX_GENOME_PROBES = 4   # of the first generation's genomes, for the candidates' durations


class EngineSource:
    """An engine copy as a job source of a play: told the play's drawn outcomes."""

    def __init__(self, engine: Engine, base: TrainConfig) -> None:
        self.engine, self.base = engine, base

    @property
    def finished(self) -> bool:
        return self.engine.finished

    def next_job(self) -> Job | None:
        trial = self.engine.ask()
        return None if trial is None else trial_job(trial, self.base, self.engine.config.rungs)

    def record(self, job: Job, outcome: Outcome) -> None:
        self.engine.tell(job.key, outcome.fitness, steps=outcome.steps,
                         stopped_at=outcome.steps if outcome.stopped else None)

    def at_checkpoint(self, job: Job, env_step: int, aulc: float) -> bool:
        return self.engine.at_checkpoint(job.key, env_step, aulc)


def verdict_jobs(setup: SearchSetup, named: Named) -> list[Job]:
    """The verdict's runs as search.py hands them out (build_plan's notes silenced: a play
    is not the verdict)."""
    with contextlib.redirect_stderr(io.StringIO()):
        plan = verdict_plan(named, setup.train.replace(seed=-1), setup.verdict.references)
    return [run_job(r) for r in handout_order(plan, list(plan.runs),
                                              setup.dispatch.members_per_trial > 1)]


class SearchPlan:
    """The rest of a search, captured from its engine now (a :class:`~search.runs.forecast.Plan`)."""

    def __init__(self, engine: Engine, setup: SearchSetup, done: Iterable[str] = ()) -> None:
        self.state, self.setup = engine.state_dict(), setup
        self.done = set(done)   # verdict runs recorded already (a resume)
        # what a play draws from: the AULCs recorded at each rung, the fitness of the
        # genomes trained to the top (so drawn and real results rank on one scale)
        self.pool: dict[int, list[float]] = {
            step: sorted(values.values()) for step, values in engine.rung_values.items()}
        self.pool[setup.train.num_train_steps] = [
            r.fitness for r in engine.records() if r.reached_top and r.fitness is not None]

    def draw(self, job: Job, env_step: int, rng: random.Random) -> float:
        """A value recorded there so far, at random; a normal draw before any is."""
        pool = self.pool.get(env_step)
        return rng.choice(pool) if pool else rng.gauss(0.0, 1.0)

    def source(self, running: set[str], clock: Clock) -> Any:
        engine = Engine.from_state_dict(self.state, running=running)
        selection = EngineSource(engine, self.setup.train)
        if not self.setup.verdict.enabled:
            return selection

        def verdict() -> ListSource | None:
            clock.marks["verdict"] = clock.now
            v = self.setup.verdict
            named = name_winners(engine.records(), v.top, v.seeds, self.setup.engine.seed)
            if not named.winners:
                return None
            return ListSource(j for j in verdict_jobs(self.setup, named) if j.key not in self.done)

        return Phases(selection, verdict)


class QueuePlan:
    """Fixed runs not started yet (a verdict's, an evaluation's), captured now."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = list(jobs)

    def source(self, running: set[str], clock: Clock) -> ListSource:
        return ListSource(j for j in self.jobs if j.key not in running)


@dataclasses.dataclass(frozen=True)
class Probes:
    """What the start-up probes: ``configs[i]`` as ``members[i]`` seeds at once, and the
    references' labels by cost key (they are not candidates: a genome not probed takes the
    candidates' mean)."""
    configs: tuple[TrainConfig, ...]
    members: tuple[int, ...]
    labels: dict[str, str]


def probe_configs(setup: SearchSetup, engine: Engine) -> Probes:
    """Up to MAX_GENOME_PROBES genomes the engine hands out first (its first generation,
    from a copy), alone, and each verdict reference alone and as the cohort its verdict
    seeds train in (cheap models batch better than the candidates' COHORT_FACTOR says)."""
    copy = Engine.from_state_dict(engine.state_dict())
    genomes: dict[str, TrainConfig] = {}
    while len(genomes) < MAX_GENOME_PROBES:
        trial = copy.ask()
        if trial is None:
            break
        config = trial_job(trial, setup.train, ()).config.replace(seed=1)
        genomes.setdefault(cost_key(config), config)
    references: dict[str, TrainConfig] = {}
    labels: dict[str, str] = {}
    if setup.verdict.enabled:
        for job in verdict_jobs(setup, Named((), (1,))):
            key = cost_key(job.config)
            references.setdefault(key, job.config)
            labels.setdefault(key, job.key.split("__")[0])
    cohort = min(setup.verdict.seeds, setup.dispatch.members_per_trial)
    configs = [*genomes.values(), *references.values()]
    members = [1] * len(configs)
    if cohort > 1:
        configs += references.values()
        members += [cohort] * len(references)
    return Probes(tuple(configs), tuple(members), labels)


def probed_durations(probes: Probes, times: Sequence[Any]) -> Durations:
    """Durations from the probes (StepTimes, None for a failed one): a lone run x
    PROBE_FACTOR; a config probed as a cohort too gets its factor (cohort / members x lone)."""
    lone: dict[str, float] = {}
    cohorts: dict[str, float] = {}
    for config, members, t in zip(probes.configs, probes.members, times):
        if t is not None:
            seconds = t.run_seconds(config)
            (lone if members == 1 else cohorts)[cost_key(config)] = seconds / members
    factors = {key: cohorts[key] / lone[key] for key in cohorts if key in lone}
    return Durations({key: s * PROBE_FACTOR for key, s in lone.items()}, probes.labels, factors)
