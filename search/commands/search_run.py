"""Running a validated search: its two phases, each a set of Ray Tune trials.

1. Selection: the engine's candidates (rungs, finalist seeds) until the budget is spent.
2. Verdict: the top N genomes are named in ``verdict/names.json`` (before any held-out
   result exists), then re-trained beside the references on fresh seeds; ``verdict/`` is
   an evaluation run folder (search/evaluation/verdict.py).

Both phases are one Tune run (search/runs/phases.py) and resume from the run folder: a
resume continues whichever phase was running.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, TextIO

from search.commands.presets import SearchSetup
from search.runs.config import DispatchError

# DispatchConfig's fields by this command's flags, and back (for error messages).
DISPATCH_FLAGS_TO_FIELDS = {"cpus_per_candidate": "cpus_per_trial",
                            "gpus_per_candidate": "gpus_per_trial"}
DISPATCH_FIELDS_TO_FLAGS = {v: k for k, v in DISPATCH_FLAGS_TO_FIELDS.items()}


@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated command: what to run and where; nothing written yet."""

    setup: SearchSetup
    path: Path
    resume: bool
    notes: tuple[str, ...] = ()


def fail(err: Exception) -> int:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if not message.startswith("search.py"):
        message = f"search.py: error: {message}"
    print(message, file=sys.stderr)
    return 2


def execute(todo: Plan, *, train_fn: Any = None, probe_fn: Any = None,
            stream: TextIO | None = None) -> int:
    """Create or reopen the run folder and run the search through its phases.

    Returns 0 when the search finished, 130 when it stopped early (resume it), 2 when the
    Ray cluster cannot be joined or cannot hold one candidate (one line, nothing written).
    ``train_fn``/``probe_fn`` replace rl.train.train and the start-up probe (tests only)."""
    # Imported here: Ray Tune takes seconds to import, bad input should not wait for it.
    from search.evolution.engine import ROW_COLUMNS, Engine
    from search.runs import cluster
    from search.runs.display import Display, Eta
    from search.runs.folder import RunFolder
    from search.runs.session import SearchSession, best_lines, engine_snapshot, run_planted

    setup = todo.setup
    notes = list(todo.notes)
    slots = 1
    owned = not setup.planted and not cluster.is_connected()  # else: left as found
    if not setup.planted:
        try:  # before the run folder: a cluster that cannot take the search writes nothing
            notes.append(cluster.init_ray(setup.dispatch))
            slots = cluster.concurrency(setup.dispatch)
        except DispatchError as err:
            if owned:
                cluster.shutdown()
            return fail(err.as_flags(DISPATCH_FIELDS_TO_FLAGS))
    try:
        session_info = {"resume": todo.resume, "dispatch": setup.dispatch.to_dict()}
        if todo.resume:
            folder = RunFolder.load(todo.path)
            folder.begin_session(session_info)
            engine = Engine.from_state_dict(folder.engine_state())
            done = engine_snapshot(engine)
            notes.append(f"resumed: {done.finished} of {done.total} candidates done, "
                         f"{engine.jobs_left()} selection runs to go ({len(engine.in_flight())} were "
                         f"in flight and run again)")
        else:
            engine = Engine(setup.engine)
            folder = RunFolder.create(todo.path, setup.to_config(), engine.state_dict(),
                                      engine.rows(), ROW_COLUMNS, session_info)
        display = Display(stream, log=folder.log_event, eta=Eta(slots=slots))
        recorded = verdict_recorded(setup, folder.path)
        verdict_runs = verdict_left(setup, folder.path, recorded)
        already_done = engine.finished and verdict_runs == 0
        session = SearchSession(engine, folder, display, base=setup.train,
                                min_interval_s=1.0 if setup.planted else 0.0,
                                jobs_after=verdict_runs)
        session.save()  # on resume: population views rebuilt from the engine state
        resume_hint = f"python search.py --resume {folder.path}"
        try:
            for note in notes:  # now: the probe below takes seconds
                display.info(note)
            if not setup.planted and not already_done:
                display.eta = startup_lines(setup, engine, slots, probe_fn, display.info,
                                            recorded)
            with display:
                if already_done:
                    display.info("the search had already finished")
                elif setup.planted:
                    run_planted(session, setup.planted_target, setup.planted_noise)
                else:
                    run_search(setup, engine, session, folder.path, folder.tune_dir, display,
                               train_fn=train_fn)
        except KeyboardInterrupt:
            print(f"interrupted; continue with: {resume_hint}", file=display.stream)
            return 130
    finally:
        if owned:
            cluster.shutdown()
    if not engine.finished or not verdict_done(setup, folder.path):
        print(f"stopped before the search was done; continue with: {resume_hint}",
              file=display.stream)
        return 130
    lines = [f"done: {folder.path}", *best_lines(engine.rows())]
    if setup.verdict.enabled:
        lines.append(f"verdict: {folder.path / 'verdict'} (the report opens with it)")
    lines.append(f"report: python search.py report {folder.path}")
    print("\n".join(lines), file=display.stream, flush=True)
    return 0


# ---------------------------------------------------------------- the verdict phase
def verdict_left(setup: SearchSetup, run: Path, recorded: set[str] | None = None) -> int:
    """The verdict's runs not recorded yet (all of them before its winners are named);
    ``recorded``: :func:`verdict_recorded`'s keys, if already loaded."""
    if not setup.verdict.enabled:
        return 0
    from search.evaluation.verdict import read_names

    named = read_names(run)
    if named is None:
        return setup.verdict.runs
    if not named.winners:
        return 0  # nothing trained to name: no verdict (said at the time)
    recorded = verdict_recorded(setup, run) if recorded is None else recorded
    expected = (len(named.winners) + len(setup.verdict.references)) * len(named.seeds)
    return max(0, expected - len(recorded))


def verdict_recorded(setup: SearchSetup, run: Path) -> set[str]:
    """The keys of the verdict runs recorded as final (a resume)."""
    from search.evaluation.folder import FINAL, load_records
    from search.evaluation.verdict import VERDICT_DIR

    if not setup.verdict.enabled or not (run / VERDICT_DIR).is_dir():
        return set()
    return {k for k, r in load_records(run / VERDICT_DIR).items() if r["status"] in FINAL}


def verdict_done(setup: SearchSetup, run: Path) -> bool:
    return verdict_left(setup, run) == 0


def prepare_verdict(setup: SearchSetup, engine: Any, run: Path) -> tuple[Any, Any]:
    """Name the winners (once: names.json is never rewritten) and write the verdict's
    evaluation config; returns (names, plan)."""
    from search.evaluation import folder as store
    from search.evaluation.verdict import VERDICT_DIR, name_winners, read_names, verdict_plan, write_names

    named = read_names(run)
    if named is None:
        named = name_winners(engine.records(), setup.verdict.top, setup.verdict.seeds,
                             setup.engine.seed)
        write_names(run, named)
    if not named.winners:
        return named, None
    base = setup.train.replace(seed=-1)
    plan = verdict_plan(named, base, setup.verdict.references)
    folder = run / VERDICT_DIR
    if not (folder / store.CONFIG_FILE).is_file():
        store.write_config(folder, plan, ["search.py verdict", str(run)], setup.dispatch.to_dict())
    return named, plan


def start_verdict(setup: SearchSetup, engine: Any, run: Path, display: Any) -> Any:
    """The verdict phase as a job source (an EvalSession over ``verdict/``), its winners
    named first; None when nothing was named. The display goes on from the selection's,
    with a forecast of the verdict's queue (durations measured in the selection, else
    probed)."""
    from search.commands.outlook import QueuePlan
    from search.evaluation.session import EvalSession
    from search.evaluation.verdict import VERDICT_DIR
    from search.runs.forecast import Durations, Forecast

    named, plan = prepare_verdict(setup, engine, run)
    if not named.winners:
        display.info("verdict: no genome finished with a fitness, so none was named; no verdict")
        return None
    folder = run / VERDICT_DIR
    winners = ", ".join(f"{w['id']} ({w['fitness']:.4g})" for w in named.winners)
    session = EvalSession(plan, folder, display, setup.dispatch.members_per_trial > 1)
    durations = getattr(display.eta, "durations", None) or Durations()
    display.eta = Forecast(lambda: QueuePlan(session.left()), durations, display.eta.slots,
                           size=setup.dispatch.members_per_trial, plays=1)
    display.info(f"verdict: named {winners}; {len(plan.runs)} runs ({len(plan.losses)} losses x "
                 f"{len(named.seeds)} held-out seeds {', '.join(map(str, named.seeds))}), "
                 f"{len(session.todo)} to train, in {folder}")
    return session


def run_search(setup: SearchSetup, engine: Any, session: Any, run: Path, tune_dir: Path,
               display: Any, train_fn: Any = None) -> None:
    """Train what is left: the selection then the verdict as phases of one Tune run (the
    verdict's trials start on the selection's workers), or, on a resume after the budget
    was spent, the verdict alone. Ctrl-C (Tune stops) ends it in either phase."""
    from search.runs.phases import Phases
    from search.runs.tuner import run_jobs

    if not engine.finished:
        source = session
        if setup.verdict.enabled:
            source = Phases(session, lambda: start_verdict(setup, engine, run, display))
        run_jobs(source, setup.dispatch, tune_dir, train_fn=train_fn)
    elif setup.verdict.enabled:
        verdict = start_verdict(setup, engine, run, display)
        if verdict is not None and not verdict.finished:
            run_jobs(verdict, setup.dispatch, tune_dir, train_fn=train_fn)


# ---------------------------------------------------------------- start-up lines
PLAYS = 9   # forecast plays where candidates may stop at rungs (drawn at random)


def startup_lines(setup: SearchSetup, engine: Any, slots: int, probe_fn: Any,
                  emit: Any, verdict_done_keys: set[str] = frozenset()) -> Any:
    """Says (``emit(line)``) what the search starts, phase by phase, then how long it will
    take: probes of its first genomes and references on a worker of this cluster give the
    durations, and a forecast plays the search forward with them (barriers, cohorts,
    finalist seeds, the verdict). Returns that forecast (the status line's ETA)."""
    from search.commands.outlook import SearchPlan, probe_configs, probed_durations
    from search.runs.display import clock
    from search.runs.forecast import Forecast, cost_key
    from search.runs.probe import probe_runs

    t, e, v = setup.train, setup.engine, setup.verdict
    net = (f"{t.encoder_type} {t.encoder_hidden_size}x{t.num_layers}" if not t.from_pixels
           else f"pixels {t.image_size}px")
    later = max(0, e.budget - e.population)
    lines = [f"search: {t.agent} on {t.task} ({net}, batch {t.batch_size}, hidden {t.hidden_dim}), "
             f"{t.num_train_steps} env steps a run at the top, {slots} runs at a time"]
    if e.rungs:
        lines.append(f"selection: {e.budget} genomes; the first {min(e.population, e.budget)} train to "
                     f"the top, the {later} after them may stop at rungs "
                     f"{', '.join(map(str, e.rungs))} (top 1/{e.reduction:g} go on); "
                     f"{e.finalist_seeds} more seeds for each that reaches the top")
        sizes = engine.generation_sizes()
        if sizes:
            lines[-1] += (f"; generations of {', '.join(map(str, sizes))}, each once the one "
                          "before is complete, its seeds included")
    else:
        lines.append(f"selection: {e.budget} genomes x {e.seeds_per_candidate} seed(s), to the top"
                     + (f", {e.finalist_seeds} more seeds for each" if e.finalist_seeds else ""))
    if v.enabled:
        lines.append(f"verdict: the top {v.top} named when the budget is spent, re-trained with "
                     f"{', '.join(v.references)} on {v.seeds} held-out seeds: {v.runs} runs")
    for line in lines:
        emit(line)
    probes = probe_configs(setup, engine)
    # a longer probe where runs are long (~100 updates, not ~50: 3-second probes of the
    # cpu preset differed by up to 1.3x from one start-up to the next)
    times, how = probe_runs(probes.configs, setup.dispatch, probe_fn=probe_fn, slots=slots,
                            details=False, members=probes.members,
                            seconds=6.0 if t.num_train_steps >= 10_000 else 3.0)
    durations = probed_durations(probes, times)
    forecast = Forecast(lambda: SearchPlan(engine, setup, verdict_done_keys), durations, slots,
                        size=setup.dispatch.members_per_trial, plays=PLAYS if e.rungs else 1)
    lone = [c for c, m, t in zip(probes.configs, probes.members, times) if t is not None and m == 1]
    cands = [durations.lone(c) for c in lone if cost_key(c) not in probes.labels]
    parts = []
    if cands:
        parts.append(f"first-generation genomes {clock(min(cands))}" + (
            f"-{clock(max(cands))}" if len(cands) > 1 else "") + f" ({len(cands)} genomes)")
    for c in lone:
        key = cost_key(c)
        if key in probes.labels:
            parts.append(f"{probes.labels[key]} {clock(durations.lone(c))}")
            if key in durations.factors:
                k = max(probes.members)
                parts[-1] += f" ({k} seeds as one: {clock(durations.lone(c) * k * durations.factor(c, k))})"
    plays = forecast.outlook()
    if not plays:
        why = f" ({forecast.error})" if forecast.error else ""
        emit(f"{how}: {'; '.join(parts) or 'failed'}; no estimate until runs finish{why}")
        return forecast
    total = sorted(p.seconds for p in plays)
    median = forecast.seconds_left()
    text = f"about {clock(median)}"
    spread = (lambda v: f" ({clock(v[0])} to {clock(v[-1])})" if v[-1] - v[0] >= 60 else "")
    if "verdict" in plays[0].marks:
        selections = sorted(p.marks["verdict"] for p in plays)
        selection = selections[len(plays) // 2]
        text = (f"selection about {clock(selection)}{spread(selections)}, verdict about "
                f"{clock(median - selection)}: {text} in all")
    if spread(total):
        text += f"{spread(total)[:-1]}, by which candidates stop at rungs)"
    emit(f"{how}, a run: {'; '.join(parts)} -> {text}")
    return forecast
