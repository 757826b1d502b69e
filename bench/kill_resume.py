"""Kill the driver of one search with SIGKILL at random moments of every phase, resume it
each time, and check the run folder: the budget met, the verdict complete, no result
recorded twice, none recorded before a kill trained again after it.

    .venv/bin/python bench/kill_resume.py [--kills 10] [--seed 2026]

The search is the smoke preset with a stand-in train function (no torch) that reports every
evaluation as rl.train does; Ray, Tune, the run folder and the resume are the real ones.
tests/test_resume.py runs the same with one kill per phase.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# The real CLI with a fake train function (no torch) that reports every evaluation through
# on_checkpoint as rl.train does, so that rungs stop candidates; every call is logged.
DRIVER = textwrap.dedent("""
    import os, sys, time, types
    sys.path.insert(0, {repo!r})
    from rl.probe import StepTimes
    from search.commands.search_cli import main

    def fake_train(config, run_dir=None, *, progress=False, threads=None, seed=None,
                   on_checkpoint=None):
        key = f"{{config.agent}}/{{config.encoder_type}}/{{config.genome.id}}-s{{seed}}"
        with open({log!r}, "a") as f:
            f.write(f"{{key}} {{os.getpid()}}\\n")
        g = config.genome
        # spread over genomes (so that rungs stop some), and a little over seeds
        quality = int(g.id[:4], 16) % 20 + seed % 3 if config.agent == "auxi_sac" else 10
        every = config.eval_every_agent_steps * config.action_repeat
        curve = []
        for step in range(0, config.num_train_steps + 1, every):
            time.sleep({sleep} / 5)
            curve.append((step, quality * step / config.num_train_steps))
            if on_checkpoint is not None:
                on_checkpoint(tuple(curve))
        returns = [r for _, r in curve]
        if run_dir is not None:
            os.makedirs(run_dir)
            with open(os.path.join(run_dir, "eval.csv"), "w") as f:
                f.write("".join(f"{{s}},{{r}}\\n" for s, r in curve))
        return types.SimpleNamespace(curve=tuple(curve), approx_aulc=sum(returns) / len(returns),
                                     final_return=returns[-1], wall_s={sleep}, train_s={sleep},
                                     failed=None, env_steps=config.num_train_steps)

    def fake_probe(config, members=1):  # a run takes about as long as fake_train sleeps
        return StepTimes(setup_s={sleep}, env_s=0.0, act_s=0.0, update_s=0.0, episode_steps=0)

    raise SystemExit(main(sys.argv[1:], train_fn=fake_train, probe_fn=fake_probe))
""")


def read_rows(path: Path) -> list[dict]:
    with open(path / "population.csv", newline="") as f:
        return list(csv.DictReader(f))


def session_processes(sid: int) -> list[int]:
    """Processes of the killed driver's session that outlived it (Ray workers sit in
    process groups of their own), to end them by pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                found.append(int(entry.name))
    return found


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the driver's process group, then whatever of its session outlived it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    for pid in session_processes(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def recorded_keys(run: Path) -> set[str]:
    """The results the run folder holds, selection (engine.json) and verdict (its records),
    as the fake's keys: what a resume must never train again."""
    from spaces import Genome, named

    keys = set()
    try:
        state = json.loads((run / "engine.json").read_text())
    except (OSError, ValueError):
        state = {"records": []}
    for r in state["records"]:
        gid = Genome.parse(r["candidate"]["genome"]).id
        keys |= {f"auxi_sac/ofe/{gid}-s{seed}" for seed, _ in r["results"]}
    for path in (run / "verdict" / "records").glob("*.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        gid = Genome.parse(rec["genome"]).id if rec["genome"] else named("a2-winner").id
        keys.add(f"{rec['agent']}/{rec['encoder_type']}/{gid}-s{rec['seed']}")
    return keys


# Where each kill falls: the start-up, or just after a result of a kind (a stopped candidate,
# a finalist seed, a verdict run). A selection phase that has ended gives way to the verdict.
EVENTS = {"result": lambda line: " | " in line and "fitness" in line,
          "rung": lambda line: "stopped at" in line,
          "finalist": lambda line: "(finalist): fitness" in line,
          "verdict": lambda line: line.startswith("[") and "| runs " not in line and " runs " in line
          and "AULC" in line}
TEN = ("result", "finalist", "startup", "rung", "finalist", "rung", "result", "verdict",
       "startup", "verdict")   # the bench's ten kills


def kill_and_resume(tmp: Path, plan: tuple[str, ...], seed: int = 2026, budget: int = 16,
                    sleep: float = 1.5) -> dict:
    """Run one search, SIGKILLed (its whole process group) once for each entry of ``plan``
    (where the kill falls: see EVENTS) and resumed; then resumed to the end. Returns what
    :func:`check` needs."""
    log, run = tmp / "calls.log", tmp / "run"
    script = tmp / "driver.py"
    script.write_text(DRIVER.format(repo=str(REPO), log=str(log), sleep=sleep))
    first = [sys.executable, str(script), "--preset", "smoke", "--budget", str(budget),
             "--population", "4", "--reduction", "2", "--verdict_top", "1",
             "--verdict_references", "sac,state-sac,a2-winner", "--num_cpus", "2",
             "--run", str(run)]
    again = [sys.executable, str(script), "--resume", str(run)]
    rng = random.Random(seed)
    kills = []
    for i, where in enumerate(plan):
        if where != "verdict" and (run / "verdict" / "names.json").exists():
            where = "verdict"
        proc = subprocess.Popen(first if i == 0 else again, cwd=tmp, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        started = time.time()
        try:
            if where == "startup" and i > 0:
                time.sleep(rng.uniform(0.2, 8.0))
            else:
                # the wanted kind of result; a rung or finalist kill whose session brings none
                # soon falls back to the tenth result of any kind
                deadline = time.time() + 180
                while not any(EVENTS[where](line) for line in lines):
                    if where in ("rung", "finalist") and sum(map(EVENTS["result"], lines)) >= 10:
                        where = "result"
                        break
                    if proc.poll() is not None or time.time() > deadline:
                        raise RuntimeError(f"kill {i} ({where}): " + "".join(lines)[-2000:])
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.6))
        finally:
            kill_session(proc)
        calls = log.read_text().split()[::2] if log.exists() else []
        kills.append({"where": where, "after_s": round(time.time() - started, 1),
                      "recorded": recorded_keys(run), "calls": len(calls)})
    done = subprocess.run(again, cwd=tmp, capture_output=True, text=True, timeout=600)
    return {"run": run, "log": log, "kills": kills, "budget": budget, "final": done}


def check(outcome: dict) -> list[str]:
    """What must hold after the kills; returns the problems (none: all well)."""
    run, kills, budget, done = outcome["run"], outcome["kills"], outcome["budget"], outcome["final"]
    problems = []
    if done.returncode != 0:
        return [f"the last resume exited {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}"]
    calls = outcome["log"].read_text().split()[::2]
    rows = read_rows(run)
    settled = [r for r in rows if r["status"] in ("trained", "stopped")]
    if not (len(settled) == budget == len({r["id"] for r in settled})):
        problems.append(f"budget {budget}, {len(settled)} settled genomes")
    final = recorded_keys(run)
    if final != set(calls):
        problems.append(f"trained but not recorded or the reverse: {sorted(final ^ set(calls))}")
    for i, kill in enumerate(kills):
        again = kill["recorded"] & set(calls[kill["calls"]:])
        if again:
            problems.append(f"recorded before kill {i} ({kill['where']}), trained after it: {sorted(again)}")
    verdict = list((run / "verdict" / "records").glob("*.json"))
    if len(verdict) != 4 * 2:
        problems.append(f"the verdict holds {len(verdict)} of 8 runs")
    events = (run / "events.log").read_text().splitlines()
    for row in settled:
        for seed in row["seeds"].split(";"):
            if sum(f"{row['id']} seed {seed}" in e and ": " in e for e in events) > 1:
                problems.append(f"{row['id']} seed {seed} recorded twice")
    with open(run / "curves.csv", newline="") as f:
        curves = {(c["id"], c["seed"]) for c in csv.DictReader(f)}
    if len(curves) != sum(len(r["seeds"].split(";")) for r in settled):
        problems.append("curves.csv does not hold one curve per recorded run")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--seed", type=int, default=2026)
    args = p.parse_args()
    plan = (TEN * (args.kills // len(TEN) + 1))[:args.kills]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        outcome = kill_and_resume(Path(tmp), plan, args.seed)
        for i, kill in enumerate(outcome["kills"]):
            print(f"kill {i + 1}: {kill['where']:<9} {kill['after_s']:>5.1f} s into its session; "
                  f"{len(kill['recorded'])} results recorded, {kill['calls']} trainings started so far")
        problems = check(outcome)
        rows = read_rows(outcome["run"])
        print(f"after the last resume: {sum(r['status'] == 'trained' for r in rows)} trained, "
              f"{sum(r['status'] == 'stopped' for r in rows)} stopped, "
              f"{len(list((outcome['run'] / 'verdict' / 'records').glob('*.json')))} verdict runs; "
              f"{len(outcome['log'].read_text().splitlines())} trainings started; "
              f"{time.time() - start:.0f} s in all")
        print("\n".join(problems) if problems else "all checks hold: budget met, verdict complete, "
              "nothing recorded twice, nothing recorded before a kill trained again")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
