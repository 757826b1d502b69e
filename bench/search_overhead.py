"""What dispatch costs: per candidate, wall time minus training time, and candidates per hour
with 1 and with 2 concurrent trials, on the smoke preset's training config (real Ray Tune,
real training).

  .venv/bin/python bench/search_overhead.py [--budget 6] [--concurrency 1,2]

Per candidate it reports
  train_s           TrainResult.train_s (env steps, updates, evaluations)
  worker overhead   trial wall time in the worker minus train_s (imports on a fresh worker,
                    env and agent construction, the report)
  driver overhead   from the searcher's suggest() to the recorded result, minus train_s
                    (adds Tune's scheduling, actor start, result delivery, our run-folder writes)
The search uses the "random" strategy so that no generation barrier idles a slot; Ray is
started once (its start-up time is printed separately).
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.runs.cluster import init_ray, local_cpus  # noqa: E402
from search.runs.config import DispatchConfig  # noqa: E402
from search.runs.display import Display  # noqa: E402
from search.runs.session import SearchSession  # noqa: E402
from search.runs.tuner import run_jobs  # noqa: E402
from search.evolution.engine import ROW_COLUMNS, Engine  # noqa: E402
from search.commands.presets import build_setup  # noqa: E402
from search.runs.folder import RunFolder  # noqa: E402


def measure(concurrent: int, budget: int, root: Path) -> dict:
    setup = build_setup("smoke", engine={"strategy": "random", "budget": budget, "population": 4},
                        dispatch={"max_concurrent": concurrent})
    engine = Engine(setup.engine)
    folder = RunFolder.create(root / f"c{concurrent}", setup.to_config(), engine.state_dict(),
                              engine.rows(), ROW_COLUMNS)
    session = SearchSession(engine, folder, Display(io.StringIO(), tty=False), base=setup.train)
    start = time.monotonic()
    run_jobs(session, setup.dispatch, folder.tune_dir)
    total = time.monotonic() - start
    ok = [t for t in session.timings if t["error"] is None and t["train_s"] is not None]
    return {
        "concurrent": concurrent, "candidates": len(ok), "failed": len(session.timings) - len(ok),
        "total_s": total, "per_hour": 3600 * len(ok) / total,
        "train_s": statistics.mean(t["train_s"] for t in ok),
        "worker_s": statistics.mean(t["wall_s"] - t["train_s"] for t in ok),
        "driver_s": statistics.mean(t["driver_s"] - t["train_s"] for t in ok),
        "driver_max_s": max(t["driver_s"] - t["train_s"] for t in ok),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=6, help="candidates per measurement")
    p.add_argument("--concurrency", default="1,2", help="comma-separated trial counts")
    args = p.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    train = build_setup("smoke").train
    print(f"training config (smoke preset): {train.task} {train.encoder_type} "
          f"{train.num_train_steps} env steps, batch {train.batch_size}, hidden {train.hidden_dim}, "
          f"eval every {train.eval_freq} ({train.num_eval_episodes} episode); "
          f"machine: {local_cpus()} CPUs")
    t0 = time.monotonic()
    print(init_ray(DispatchConfig(num_cpus=max(levels + [local_cpus()]))),
          f"(start-up {time.monotonic() - t0:.1f} s)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for level in levels:
            rows.append(measure(level, args.budget, Path(tmp)))
    import ray
    ray.shutdown()
    print(f"{'concurrent':>10} {'cands':>5} {'failed':>6} {'total_s':>8} {'cand/hour':>9} "
          f"{'train_s':>8} {'worker_ovh_s':>12} {'driver_ovh_s':>12} {'driver_ovh_max':>14}")
    for r in rows:
        print(f"{r['concurrent']:>10} {r['candidates']:>5} {r['failed']:>6} {r['total_s']:>8.1f} "
              f"{r['per_hour']:>9.0f} {r['train_s']:>8.2f} {r['worker_s']:>12.2f} "
              f"{r['driver_s']:>12.2f} {r['driver_max_s']:>14.2f}")
    print("overhead = wall time minus TrainResult.train_s, mean per candidate; driver overhead "
          "includes the worker's")


if __name__ == "__main__":
    main()
