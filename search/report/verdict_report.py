"""The verdict of a search, recomputed from the runs its folder lists (``verdict/``): each
named winner against each reference on the held-out seeds: the difference of the means
with its 95% Welch interval and p, the interquartile means with bootstrap intervals, and
the learning curves."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from search.evaluation.folder import FINAL, load_records, read_config
from search.evaluation.verdict import VERDICT_DIR, read_names
from search.report import stats

METRICS = (("final_return", "return at the top"), ("approx_aulc", "AULC"))
COLUMNS = ["winner", "reference", "metric", "n_winner", "n_reference", "mean_winner",
           "mean_reference", "diff", "diff_ci95_low", "diff_ci95_high", "welch_p",
           "iqm_winner", "iqm_winner_ci95_low", "iqm_winner_ci95_high", "iqm_reference",
           "iqm_reference_ci95_low", "iqm_reference_ci95_high"]


def load_verdict(run: Path) -> tuple[dict, dict, list[dict]] | None:
    """(names.json, the verdict's evaluation config, its done records), or None."""
    named = read_names(run)
    folder = Path(run) / VERDICT_DIR
    if named is None or not named.winners or not (folder / "eval_config.json").is_file():
        return None
    config = read_config(folder, "report")
    records = [r for r in load_records(folder).values() if r["status"] in FINAL]
    return {"winners": list(named.winners), "seeds": list(named.seeds)}, config, records


def verdict_table(config: dict, records: list[dict]) -> pd.DataFrame:
    losses = config["plan"]["losses"]
    winners = [l["label"] for l in losses if l["origin"] != "reference"]
    references = [l["label"] for l in losses if l["origin"] == "reference"]
    done = [r for r in records if r["status"] == "done"]
    rows = []
    for winner in winners:
        for ref in references:
            for field, name in METRICS:
                a = [r[field] for r in done if r["loss"] == winner]
                b = [r[field] for r in done if r["loss"] == ref]
                welch = stats.welch_t_test(a, b)
                low, high = stats.welch_interval(a, b)
                qa, qb = stats.iqm_ci(a), stats.iqm_ci(b)
                rows.append({"winner": winner, "reference": ref, "metric": name,
                             "n_winner": len(a), "n_reference": len(b),
                             "mean_winner": stats.summarize(a).mean,
                             "mean_reference": stats.summarize(b).mean,
                             "diff": welch.mean_diff, "diff_ci95_low": low, "diff_ci95_high": high,
                             "welch_p": welch.p, "iqm_winner": qa.value,
                             "iqm_winner_ci95_low": qa.ci_low, "iqm_winner_ci95_high": qa.ci_high,
                             "iqm_reference": qb.value, "iqm_reference_ci95_low": qb.ci_low,
                             "iqm_reference_ci95_high": qb.ci_high})
    return pd.DataFrame(rows, columns=COLUMNS)


def _f(x: float, digits: int = 0) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _p(p: float) -> str:
    return "–" if not math.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def says(row: dict) -> str:
    """The verdict of one comparison in words."""
    if not math.isfinite(row["welch_p"]):
        return "too few runs to tell"
    if row["welch_p"] < 0.05:
        return "beats it" if row["diff"] > 0 else "loses to it"
    return "no significant difference"


def markdown(named: dict, config: dict, records: list[dict], table: pd.DataFrame,
             plot: Path | None, base: Path) -> str:
    plan = config["plan"]
    names = ", ".join(f"`{w['id']}` (search fitness {w['fitness']:.4g})" for w in named["winners"])
    out = ["## Verdict on held-out seeds", "",
           f"Named before any held-out run: {names}. "
           f"Re-trained on {plan['tasks'][0]} at {plan['num_train_steps']} env steps with seeds "
           f"{', '.join(map(str, named['seeds']))}, which no selection used; "
           f"{len(records)} of {len(plan['runs'])} runs recorded. Difference = winner minus "
           f"reference, 95% Welch interval, Welch p (two-sided); IQM with percentile-bootstrap "
           f"95% intervals.", "",
           "| winner | reference | metric | mean Δ [95% CI] | p | IQM winner | IQM reference | verdict |",
           "|---|---|---|---|---|---|---|---|"]
    for row in table.to_dict("records"):
        out.append(
            f"| {row['winner']} | {row['reference']} | {row['metric']} | {_f(row['diff'])} "
            f"[{_f(row['diff_ci95_low'])}, {_f(row['diff_ci95_high'])}] | {_p(row['welch_p'])} | "
            f"{_f(row['iqm_winner'])} [{_f(row['iqm_winner_ci95_low'])}, {_f(row['iqm_winner_ci95_high'])}] | "
            f"{_f(row['iqm_reference'])} [{_f(row['iqm_reference_ci95_low'])}, {_f(row['iqm_reference_ci95_high'])}] | "
            f"{says(row)} |")
    if plot is not None:
        out += ["", f"![verdict curves]({os.path.relpath(plot, base)})"]
    return "\n".join(out)


def text(table: pd.DataFrame) -> list[str]:
    lines = []
    for row in table[table["metric"] == METRICS[0][1]].to_dict("records"):
        lines.append(f"  {row['winner']} vs {row['reference']}: return at the top "
                     f"{_f(row['mean_winner'])} vs {_f(row['mean_reference'])}, diff "
                     f"{_f(row['diff'])} [{_f(row['diff_ci95_low'])}, {_f(row['diff_ci95_high'])}], "
                     f"p {_p(row['welch_p'])} (n {row['n_winner']}/{row['n_reference']}): {says(row)}")
    return lines


def plot_curves(config: dict, records: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in records if r["status"] == "done" and r["curve"]]
    if not done:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for loss in config["plan"]["losses"]:
        runs = [r for r in done if r["loss"] == loss["label"]]
        by_step: dict[int, list[float]] = {}
        for r in runs:
            for s, v in r["curve"]:
                by_step.setdefault(int(s), []).append(v)
        if not by_step:
            continue
        steps = sorted(by_step)
        summaries = [stats.summarize(by_step[s]) for s in steps]
        style = "-" if loss["origin"] != "reference" else "--"
        line, = ax.plot(steps, [s.mean for s in summaries], style, label=f"{loss['label']} (n={len(runs)})")
        lo = [s.ci_low if math.isfinite(s.ci_low) else s.mean for s in summaries]
        hi = [s.ci_high if math.isfinite(s.ci_high) else s.mean for s in summaries]
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_title("Verdict on held-out seeds: mean return, band = 95% t-interval of the mean", fontsize=9)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
