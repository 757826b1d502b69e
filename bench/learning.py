"""Learning benchmark (not a CI test): state SAC and A2-winner on cartpole_swingup.

    python bench/learning.py --seeds 1 2 3 --num_train_steps 50000 --out results/bench_learning

Runs the README's vector commands (README defaults otherwise: batch 512, hidden 1024) for
each seed, one process per run (``--jobs`` at a time, torch threads split between them),
then prints the curves, the mean return by 50k steps, and writes ``curves.csv`` and
``curves.png``. Run again with the same ``--out``, it skips finished runs and restarts
unfinished ones (moved aside to ``NAME.unfinished``). The released code reached 865 (SAC)
and 879 (A2-winner) by 50k with seed 1.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AGENTS = {
    "sac": "--encoder_type mlp --encoder_hidden_size 40 --num_layers 1 --agent pixel_sac",
    "a2-winner": ("--encoder_type ofe --encoder_hidden_size 40 --num_layers 1 --agent auxi_sac "
                  "--auxi_pred_horizon 4 --auxi_pred_input_s 1000 --auxi_pred_input_a 1111 "
                  "--auxi_pred_input_r 1101 --auxi_pred_input_s_ 0 --auxi_pred_output_s 0111 "
                  "--auxi_pred_output_a 0000 --auxi_pred_output_r 0000 --auxi_pred_output_s_ 1 "
                  "--similarity_metric mse"),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cartpole_swingup")
    p.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--num_train_steps", type=int, default=50_000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--extra", default="", help="more train.py flags for every run")
    p.add_argument("--out", default="results/bench_learning")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    runs = [(a, s) for s in args.seeds for a in args.agents]  # seed-major: pairs finish together
    pending, running = list(runs), []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    while pending or running:
        while pending and len(running) < args.jobs:
            agent, seed = pending.pop(0)
            run_dir = out / f"{agent}-s{seed}"
            if (run_dir / "result.json").exists():
                continue
            if run_dir.exists():  # an unfinished run (killed): keep it aside, start again
                aside = run_dir.with_name(f"{run_dir.name}.unfinished")
                n = 1
                while aside.exists():
                    n += 1
                    aside = run_dir.with_name(f"{run_dir.name}.unfinished{n}")
                run_dir.rename(aside)
                print(f"{run_dir} was unfinished: moved to {aside.name}", flush=True)
            cmd = [sys.executable, str(ROOT / "train.py"), "--domain_name", args.task,
                   *AGENTS[agent].split(), "--seed", str(seed), "--num_train_steps",
                   str(args.num_train_steps), "--run", str(run_dir), "--quiet", *args.extra.split()]
            log = open(out / f"{agent}-s{seed}.log", "w")
            running.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=log), agent, seed))
        proc, agent, seed = running[0]
        proc.wait()
        running.pop(0)
        print(f"done: {agent} seed {seed} (exit {proc.returncode})", flush=True)
    return summarise(out, args)


def summarise(out: Path, args) -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frames = []
    for agent in args.agents:
        for seed in args.seeds:
            path = out / f"{agent}-s{seed}" / "eval.csv"
            if path.exists():
                frames.append(pd.read_csv(path).assign(agent=agent, seed=seed))
    if not frames:
        print("no finished runs")
        return 1
    curves = pd.concat(frames)[["agent", "seed", "env_step", "episode_return"]]
    curves.to_csv(out / "curves.csv", index=False)
    table = curves.pivot_table(index="env_step", columns=["agent", "seed"], values="episode_return")
    print(table.round(1).to_string())
    fig, ax = plt.subplots(figsize=(7, 4))
    for agent, group in curves.groupby("agent"):
        stats = group.groupby("env_step").episode_return.agg(["mean", "std"]).fillna(0)
        ax.plot(stats.index, stats["mean"], label=f"{agent} (n={group.seed.nunique()})")
        ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                        alpha=0.2)
    ax.axhline(800, color="grey", ls=":", lw=1)
    ax.set(xlabel="environment steps", ylabel="evaluation return (mean ± std over seeds)",
           title=f"{args.task}, state observations")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    last = curves[curves.env_step <= args.num_train_steps]
    final = last[last.env_step == last.env_step.max()].groupby("agent").episode_return
    for agent, returns in final:
        print(f"{agent}: mean return at {last.env_step.max()} env steps = {returns.mean():.1f} "
              f"(seeds: {', '.join(f'{r:.0f}' for r in returns)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
