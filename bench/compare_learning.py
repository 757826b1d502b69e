"""Does a flag change learning? Two folders of finished runs, compared seed by seed.

    python bench/compare_learning.py results/sw_separate results/sw_shared --labels separate shared

Each folder holds run folders (``train.py --run`` / ``bench/learning.py --out``) with
``config.json`` and ``result.json`` (its curve), all of one configuration (the runs of a
folder may differ only in their seed); runs are matched by seed. For every run:
the approximate AULC (mean evaluation return over the checkpoints up to ``--at``) and the
return at ``--at``. Printed: both per seed, each side's mean with its 95% t-interval,
Welch's t-test, and the paired difference (B - A, same seeds: same initial weights and
environment seeds) with its 95% t-interval; first, what differs between the two sides'
configurations. ``--plot`` writes the mean curves.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.report.stats import summarize, welch_t_test  # noqa: E402


IGNORED = {"seed", "work_dir"}  # what may differ between runs of one side


def differing(x: dict, y: dict) -> list[str]:
    return sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))


def load(folder: Path, at: int) -> tuple[pd.DataFrame, dict]:
    """One row per finished run (seed, approx_aulc, final = return at ``at``, curve) and the
    configuration the runs share; refuses a folder whose runs differ in anything but the
    seed (e.g. two agents from one ``bench/learning.py --out``) or repeat a seed."""
    rows, configs = [], {}
    for run in sorted(p for p in folder.iterdir() if (p / "result.json").exists()):
        config = json.loads((run / "config.json").read_text())
        seed = config["seed"]
        if seed in configs:
            raise ValueError(f"{folder}: seed {seed} appears twice ({configs[seed][0]} and "
                             f"{run.name}); give a folder of one configuration")
        configs[seed] = (run.name, {k: v for k, v in config.items() if k not in IGNORED})
        steps, returns = zip(*json.loads((run / "result.json").read_text())["curve"])
        curve = pd.Series(returns, index=pd.Index(steps, name="env_step"))
        curve = curve[curve.index <= at]
        if curve.empty or curve.index[-1] != at:
            raise ValueError(f"{run}: no evaluation at env step {at}")
        rows.append({"seed": seed, "approx_aulc": curve.mean(), "final": float(curve.iloc[-1]),
                     "curve": curve})
    if not rows:
        raise ValueError(f"{folder}: no finished runs (run folders with result.json)")
    (first_name, shared), *rest = configs.values()
    for name, config in rest:
        differ = differing(shared, config)
        if differ:
            raise ValueError(f"{folder}: {first_name} and {name} differ in {', '.join(differ)}; "
                             f"give a folder of one configuration")
    return pd.DataFrame(rows).set_index("seed").sort_index(), shared


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--labels", nargs=2, default=None)
    p.add_argument("--at", type=int, default=50_000, help="env step of the final return")
    p.add_argument("--plot", type=Path, default=None, help="write the mean curves here (png)")
    args = p.parse_args()
    for folder in (args.a, args.b):
        if not folder.is_dir():
            p.error(f"{folder}: not a folder")
    label_a, label_b = args.labels or (args.a.name, args.b.name)
    try:
        (a, config_a), (b, config_b) = load(args.a, args.at), load(args.b, args.at)
    except ValueError as error:
        print(f"compare_learning.py: {error}", file=sys.stderr)
        return 2
    differ = differing(config_a, config_b)
    print(f"{label_a} vs {label_b} differ in: "
          + (", ".join(f"{k} {config_a.get(k)!r} -> {config_b.get(k)!r}" for k in differ) or "nothing"))
    seeds = a.index.intersection(b.index)
    if len(seeds) < max(len(a), len(b)):
        print(f"note: {len(seeds)} seeds on both sides ({len(a)} and {len(b)} in all); Welch uses "
              f"every run, the paired difference only the common seeds")
    table = pd.DataFrame({f"{label_a} aulc": a.approx_aulc, f"{label_b} aulc": b.approx_aulc,
                          f"{label_a} @{args.at}": a.final, f"{label_b} @{args.at}": b.final})
    print(table.round(1).to_string())
    for column, name in (("approx_aulc", "approx AULC"), ("final", f"return at {args.at}")):
        sa, sb = summarize(a[column]), summarize(b[column])
        welch = welch_t_test(b[column], a[column])
        paired = summarize(b.loc[seeds, column] - a.loc[seeds, column])
        print(f"\n{name}: {label_a} {sa.mean:.1f} [{sa.ci_low:.1f}, {sa.ci_high:.1f}] (n={sa.n}), "
              f"{label_b} {sb.mean:.1f} [{sb.ci_low:.1f}, {sb.ci_high:.1f}] (n={sb.n}); "
              f"Welch {label_b} - {label_a} = {welch.mean_diff:+.1f}, p = {welch.p:.2f}; "
              f"paired over {paired.n} seeds {paired.mean:+.1f} "
              f"[{paired.ci_low:+.1f}, {paired.ci_high:+.1f}]")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        for label, frame in ((label_a, a), (label_b, b)):
            curves = pd.concat(list(frame.curve), axis=1)
            mean, std = curves.mean(axis=1), curves.std(axis=1).fillna(0)
            ax.plot(mean.index, mean, label=f"{label} (n={curves.shape[1]})")
            ax.fill_between(mean.index, mean - std, mean + std, alpha=0.2)
        ax.set(xlabel="environment steps", ylabel="evaluation return (mean ± std over seeds)")
        ax.legend()
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"\nwrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
