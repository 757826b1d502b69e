"""Does a cohort (rl.cohort, K seeds as one batched model) learn as lone runs do?

    python bench/cohort_learning.py --seeds 1 2 3 --out results/cohort_learning

Trains the README's vector A2-winner command on cheetah_run states (ofe 40 x 1, here at
batch 128 / hidden 256, 100k env steps, every other flag the TrainConfig default) twice
per seed: once as one cohort of all ``--seeds`` (``rl.cohort.train_cohort``) and once as
lone ``rl.train.train`` runs, each process on one thread, ``--jobs`` at a time. Prints the
return at the last step and the AULC of every run, their means and standard deviations and
Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``, two-sided) of cohort against
lone. Finished runs (``result.json`` present) are read, not re-run.
"""
from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rl.config import TrainConfig  # noqa: E402


def vector_a2_winner(steps: int) -> TrainConfig:
    return TrainConfig(domain_name="cheetah_run", agent="auxi_sac", encoder_type="ofe",
                       encoder_hidden_size=40, num_layers=1, batch_size=128, hidden_dim=256,
                       num_train_steps=steps, device="cpu")


def run_lone(config: TrainConfig, seed: int, run_dir: str) -> None:
    from rl.train import train
    train(config, run_dir, seed=seed, threads=1)


def run_cohort(config: TrainConfig, seeds: list[int], run_dirs: list[str]) -> None:
    from rl.cohort import train_cohort
    train_cohort(config, seeds, run_dirs, threads=1)


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--num_train_steps", type=int, default=100_000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="results/cohort_learning")
    a = p.parse_args()
    if len(a.seeds) < 2 or a.jobs < 1:
        p.error("--seeds: at least two (for the t-test); --jobs >= 1")
    out = Path(a.out)
    config = vector_a2_winner(a.num_train_steps)
    cohort_dirs = [out / f"cohort-s{s}" for s in a.seeds]
    lone_dirs = [out / f"lone-s{s}" for s in a.seeds]
    with ProcessPoolExecutor(a.jobs, mp_context=get_context("spawn")) as pool:
        jobs = []
        if not all((d / "result.json").exists() for d in cohort_dirs):
            jobs.append(pool.submit(run_cohort, config, a.seeds, [str(d) for d in cohort_dirs]))
        jobs += [pool.submit(run_lone, config, s, str(d)) for s, d in zip(a.seeds, lone_dirs)
                 if not (d / "result.json").exists()]
        for job in jobs:
            job.result()

    from scipy.stats import ttest_ind
    runs = {"cohort": [result(d) for d in cohort_dirs], "lone": [result(d) for d in lone_dirs]}
    print(f"cheetah_run states, A2-winner, ofe 40x1, batch 128 / hidden 256, "
          f"{a.num_train_steps} env steps")
    print(f"{'seed':>6} {'cohort final':>13} {'lone final':>11} {'cohort AULC':>12} {'lone AULC':>10}"
          f" {'cohort train_s':>15} {'lone train_s':>13}")
    for i, seed in enumerate(a.seeds):
        c, lone = runs["cohort"][i], runs["lone"][i]
        print(f"{seed:>6} {c['final_return']:>13.1f} {lone['final_return']:>11.1f} "
              f"{c['approx_aulc']:>12.1f} {lone['approx_aulc']:>10.1f} {c['train_s']:>15.0f} "
              f"{lone['train_s']:>13.0f}{'  failed: ' + c['failed'] if c['failed'] else ''}")
    for key, label in (("final_return", f"return at {a.num_train_steps}"), ("approx_aulc", "AULC")):
        cohort = np.array([r[key] for r in runs["cohort"]])
        lone = np.array([r[key] for r in runs["lone"]])
        test = ttest_ind(cohort, lone, equal_var=False)
        print(f"{label}: cohort {cohort.mean():.1f} +/- {cohort.std(ddof=1):.1f}, lone "
              f"{lone.mean():.1f} +/- {lone.std(ddof=1):.1f} (mean +/- sd over {len(a.seeds)} "
              f"seeds); Welch t = {test.statistic:.2f}, p = {test.pvalue:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
