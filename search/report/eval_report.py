"""The evaluation report: curves.csv, summary.csv, comparison.csv, summary.md and one
learning-curve PNG per task, built from a run folder's eval_config.json and records.

Table 2 of the paper reports the return at 100k and 500k environment steps on pixels; we
report the same points (or the last checkpoint of a shorter run, naming its step), the
approximate AULC (the mean return over the checkpoints, SPEC section 4), and put the paper's
pixel numbers beside ours only where they compare: encoder ``pixel``, one of the six tasks,
exactly 100k or 500k steps. Diverged or errored runs are counted (``n_failed``), never
averaged in.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from rl.run_dir import atomic_write_text, write_csv
from search.report import stats
from search.evaluation.folder import CONFIG_FILE, load_records
from search.evaluation.plan import REPORT_STEPS
from spaces import named

ALL = "all tasks"

# A2LS Table 2 (image-based DMC, mean ± std), /work/shared/research/paper-notes.md section 5.1.
PAPER: dict[str, dict[int, dict[str, tuple[float, float]]]] = {
    "A2-winner": {
        100_000: {"cheetah_run": (449, 34), "reacher_easy": (778, 164), "walker_walk": (510, 151),
                  "finger_spin": (872, 27), "cartpole_swingup": (815, 66),
                  "ball_in_cup_catch": (862, 167)},
        500_000: {"cheetah_run": (613, 39), "reacher_easy": (938, 46), "walker_walk": (917, 18),
                  "finger_spin": (983, 4), "cartpole_swingup": (864, 19),
                  "ball_in_cup_catch": (970, 8)}},
    "CURL": {
        100_000: {"cheetah_run": (299, 48), "reacher_easy": (538, 233), "walker_walk": (403, 24),
                  "finger_spin": (767, 56), "cartpole_swingup": (582, 146),
                  "ball_in_cup_catch": (769, 43)},
        500_000: {"cheetah_run": (518, 28), "reacher_easy": (929, 44), "walker_walk": (902, 43),
                  "finger_spin": (926, 45), "cartpole_swingup": (841, 45),
                  "ball_in_cup_catch": (959, 27)}},
    "Image SAC": {
        100_000: {"cheetah_run": (128, 12), "reacher_easy": (277, 69), "walker_walk": (127, 28),
                  "finger_spin": (160, 138), "cartpole_swingup": (243, 19),
                  "ball_in_cup_catch": (100, 90)},
        500_000: {"cheetah_run": (99, 28), "reacher_easy": (312, 132), "walker_walk": (76, 44),
                  "finger_spin": (282, 102), "cartpole_swingup": (344, 104),
                  "ball_in_cup_catch": (200, 114)}},
}


def paper_name(loss: dict) -> str | None:
    """Which paper column a loss is: by agent for baselines, by genome for A2-winner."""
    if loss.get("encoder"):  # e.g. SAC on states (identity encoder): not a paper column
        return None
    if loss["agent"] == "curl_sac":
        return "CURL"
    if loss["agent"] == "pixel_sac":
        return "Image SAC"
    return "A2-winner" if loss["genome"] == str(named("a2-winner")) else None


def _value_at(curve: list, step: int) -> float:
    """Return at the last checkpoint at or before ``step``."""
    before = [r for s, r in curve if s <= step]
    return float(before[-1]) if before else math.nan


def report_points(done: list[dict]) -> list[tuple[int, int]]:
    """(target, step used) for 100k and 500k: the target itself, or the last checkpoint of
    runs that stop short of it; targets that collapse onto the same step are shown once."""
    done = [r for r in done if r["curve"]]
    if not done:
        return []
    last = min(r["curve"][-1][0] for r in done)
    grid = sorted({s for r in done for s, _ in r["curve"]})
    points = []
    for target in REPORT_STEPS:
        used = max(s for s in grid if s <= min(target, last))
        if used not in [u for _, u in points]:
            points.append((target, used))
    return points


def metric_title(target: int | None, used: int | None) -> str:
    if target is None:
        return "AULC (mean evaluation return over every checkpoint)"
    if used == target:
        return f"Return at {target // 1000}k env steps"
    return f"Return at {used} env steps (the last checkpoint at or before {target // 1000}k)"


def _metrics(done: list[dict]) -> list[tuple[str, int | None, int | None]]:
    """(name, target, step used) of every reported metric."""
    return [(f"return@{used}", target, used) for target, used in report_points(done)] + \
        [("aulc", None, None)]


def _values(runs: list[dict], used: int | None) -> list[float]:
    return [r["approx_aulc"] if used is None else _value_at(r["curve"], used) for r in runs]


def _fmt(x: float, digits: int = 0) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _fmt_p(p: float) -> str:
    return "–" if not math.isfinite(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def load(run_dir: Path) -> tuple[dict, list[dict]]:
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    records = load_records(run_dir)
    order = {r["key"]: i for i, r in enumerate(config["plan"]["runs"])}
    return config, sorted(records.values(), key=lambda r: order.get(r["key"], len(order)))


def summary_rows(plan: dict, records: list[dict]) -> list[dict]:
    done = [r for r in records if r["status"] == "done"]
    rows = []
    for loss in plan["losses"]:
        mine = [r for r in records if r["loss"] == loss["label"]]
        name = paper_name(loss) if plan["encoder_type"] == "pixel" else None
        for metric, target, used in _metrics(done):
            per_task = []
            for task in plan["tasks"]:
                runs = [r for r in mine if r["task"] == task]
                ok = [r for r in runs if r["status"] == "done"]
                values = _values(ok, used)
                per_task.append(values)
                s, q = stats.summarize(values), stats.iqm_ci(values)
                paper = PAPER.get(name, {}).get(used, {}).get(task) if used == target else None
                rows.append({"loss": loss["label"], "agent": loss["agent"],
                             "genome": loss["genome"] or "", "task": task,
                             "encoder_type": plan["encoder_type"], "metric": metric,
                             "target_step": target or "", "step": used or "", "n": s.n,
                             "n_failed": len(runs) - len(ok), "mean": s.mean, "std": s.std,
                             "ci95_low": s.ci_low, "ci95_high": s.ci_high, "iqm": q.value,
                             "iqm_ci95_low": q.ci_low, "iqm_ci95_high": q.ci_high,
                             "paper": name if paper else "", "paper_mean": paper[0] if paper else "",
                             "paper_std": paper[1] if paper else ""})
            if len(plan["tasks"]) < 2:
                continue  # the one task's row says it all
            means = [stats.summarize(v).mean for v in per_task]
            q = stats.iqm_ci([v for v in per_task if v])
            papers = [PAPER.get(name, {}).get(used, {}).get(t) for t in plan["tasks"]]
            paper_mean = (sum(p[0] for p in papers) / len(papers)
                          if used == target and len(papers) == 6 and all(papers) else "")
            rows.append({"loss": loss["label"], "agent": loss["agent"],
                         "genome": loss["genome"] or "", "task": ALL,
                         "encoder_type": plan["encoder_type"], "metric": metric,
                         "target_step": target or "", "step": used or "",
                         "n": sum(len(v) for v in per_task),
                         "n_failed": sum(1 for r in mine if r["status"] != "done"),
                         "mean": (sum(means) / len(means)) if all(map(math.isfinite, means)) else math.nan,
                         "std": math.nan, "ci95_low": math.nan, "ci95_high": math.nan,
                         "iqm": q.value, "iqm_ci95_low": q.ci_low, "iqm_ci95_high": q.ci_high,
                         "paper": name if paper_mean != "" else "", "paper_mean": paper_mean,
                         "paper_std": ""})
    return rows


def comparison_rows(plan: dict, records: list[dict]) -> list[dict]:
    """Each loss against each baseline, per task and over all tasks (stratified IQM only:
    a t-test across tasks would mix the tasks' scales)."""
    done = [r for r in records if r["status"] == "done"]
    losses = [l for l in plan["losses"] if l["genome"]]
    bases = [l for l in plan["losses"] if not l["genome"]]
    rows = []
    for loss in losses:
        for base in bases:
            for metric, field in (("aulc", "approx_aulc"), ("final_return", "final_return")):
                a_groups, b_groups = [], []
                for task in list(plan["tasks"]) + ([ALL] if len(plan["tasks"]) > 1 else []):
                    if task == ALL:
                        a, b, w = a_groups, b_groups, stats.Welch(math.nan, *[math.nan] * 3)
                    else:
                        a = [r[field] for r in done if r["loss"] == loss["label"] and r["task"] == task]
                        b = [r[field] for r in done if r["loss"] == base["label"] and r["task"] == task]
                        a_groups.append(a)
                        b_groups.append(b)
                        w = stats.welch_t_test(a, b)
                    qa, qb = stats.iqm_ci(a), stats.iqm_ci(b)
                    d = stats.iqm_difference_ci(a, b)
                    flat_a = [x for g in a for x in g] if task == ALL else a
                    flat_b = [x for g in b for x in g] if task == ALL else b
                    rows.append({
                        "loss": loss["label"], "baseline": base["label"], "task": task,
                        "metric": metric, "n_loss": len(flat_a), "n_baseline": len(flat_b),
                        "mean_loss": stats.summarize(flat_a).mean,
                        "mean_baseline": stats.summarize(flat_b).mean,
                        "mean_diff": w.mean_diff if task != ALL else
                        stats.summarize(flat_a).mean - stats.summarize(flat_b).mean,
                        "welch_t": w.t, "welch_df": w.df, "welch_p": w.p,
                        "iqm_loss": qa.value, "iqm_loss_ci95_low": qa.ci_low,
                        "iqm_loss_ci95_high": qa.ci_high, "iqm_baseline": qb.value,
                        "iqm_baseline_ci95_low": qb.ci_low, "iqm_baseline_ci95_high": qb.ci_high,
                        "iqm_diff": d.value, "iqm_diff_ci95_low": d.ci_low,
                        "iqm_diff_ci95_high": d.ci_high})
    return rows


def curve_rows(records: list[dict]) -> list[dict]:
    return [{"loss": r["loss"], "agent": r["agent"], "task": r["task"], "seed": r["seed"],
             "env_step": s, "return": v} for r in records for s, v in r["curve"]]


def plot_curves(plan: dict, records: list[dict], folder: Path) -> list[Path]:
    """One PNG per task: the mean over seeds with a shaded 95% t-interval of the mean."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in plan["tasks"]:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for loss in plan["losses"]:
            runs = [r for r in records if r["status"] == "done" and r["loss"] == loss["label"]
                    and r["task"] == task]
            by_step: dict[int, list[float]] = {}
            for r in runs:
                for s, v in r["curve"]:
                    by_step.setdefault(int(s), []).append(v)
            if not by_step:
                continue
            steps = sorted(by_step)
            summaries = [stats.summarize(by_step[s]) for s in steps]
            line, = ax.plot(steps, [s.mean for s in summaries], label=f"{loss['label']} (n={len(runs)})")
            lo = [s.ci_low if math.isfinite(s.ci_low) else s.mean for s in summaries]
            hi = [s.ci_high if math.isfinite(s.ci_high) else s.mean for s in summaries]
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(f"{task} ({plan['encoder_type']}): mean over seeds, band = 95% t-CI of the mean",
                     fontsize=9)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = folder / f"{task}.png"
        fig.tight_layout()
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def _cell(row: dict | None, n_seeds: int) -> str:
    if row is None or row["n"] == 0:
        return "–" if row is None or not row["n_failed"] else f"– ({row['n_failed']} failed)"
    text = f"{_fmt(row['mean'])} ± {_fmt(row['std'])} [{_fmt(row['ci95_low'])}, {_fmt(row['ci95_high'])}]"
    if row["n"] != n_seeds or row["n_failed"]:
        text += f" (n={row['n']}" + (f", {row['n_failed']} failed)" if row["n_failed"] else ")")
    return text


def markdown(run_dir: Path, config: dict, records: list[dict], rows: list[dict],
             comparison: list[dict], plots: list[Path]) -> str:
    plan = config["plan"]
    n_seeds = len(plan["seeds"])
    pixel = plan["encoder_type"] == "pixel"
    out = [f"# Evaluation: {run_dir}", "",
           f"Encoder `{plan['encoder_type']}`, tasks {', '.join(plan['tasks'])}, {n_seeds} seeds "
           f"({', '.join(map(str, plan['seeds']))}), {plan['num_train_steps']} env steps per run, "
           f"evaluation every {plan['eval_freq']} env steps ({plan['num_eval_episodes']} episodes).", ""]
    out += [f"- **{l['label']}**: `{l['agent']}`" + (f", `{l['genome']}`" if l["genome"] else "")
            + f" ({l['origin']})" for l in plan["losses"]]
    out += ["", "Cells: mean ± std [95% t-interval of the mean] over seeds; n is shown where a "
            "run is missing. Diverged or errored runs are counted, not averaged in."]
    out += (["Paper columns: A2LS Table 2, **pixel** observations, mean ± std (shown only at "
             "exactly 100k/500k steps)."] if pixel else
            ["The paper's Table 2 numbers are for pixel observations; with encoder "
             f"`{plan['encoder_type']}` they do not compare and are not shown."])
    for metric in dict.fromkeys(r["metric"] for r in rows):
        mrows = [r for r in rows if r["metric"] == metric]
        target = mrows[0]["target_step"] or None
        used = mrows[0]["step"] or None
        out += ["", f"## {metric_title(target, used)}", ""]
        header, cols = ["task"], []
        for loss in plan["losses"]:
            header.append(loss["label"])
            cols.append((loss["label"], False))
            if any(r["paper"] for r in mrows if r["loss"] == loss["label"]):
                header.append(f"{paper_name(loss)} (paper, pixels)")
                cols.append((loss["label"], True))
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for task in list(plan["tasks"]) + ([ALL] if len(plan["tasks"]) > 1 else []):
            cells = ["mean over tasks" if task == ALL else task]
            for label, is_paper in cols:
                row = next(r for r in mrows if r["loss"] == label and r["task"] == task)
                if is_paper:
                    cells.append("–" if row["paper_mean"] == "" else
                                 f"{_fmt(row['paper_mean'])}" + (f" ± {row['paper_std']}" if row["paper_std"] != "" else ""))
                elif task == ALL:
                    cells.append(f"{_fmt(row['mean'])} (IQM {_fmt(row['iqm'])} "
                                 f"[{_fmt(row['iqm_ci95_low'])}, {_fmt(row['iqm_ci95_high'])}])")
                else:
                    cells.append(_cell(row, n_seeds))
            out.append("| " + " | ".join(cells) + " |")
    out += ["", "## Each loss against each baseline", ""]
    if not comparison:
        out.append("No comparison: the evaluation holds no loss and baseline pair.")
    else:
        out += ["Welch's t-test (two-sided) per task; interquartile mean (IQM) over runs with a "
                "percentile-bootstrap 95% interval (stratified by task for *all tasks*). "
                "final_return = return at the last checkpoint.", "",
                "| loss | baseline | task | metric | mean Δ | Welch t (df) | p | IQM loss | IQM baseline | IQM Δ |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for c in comparison:
            out.append(
                f"| {c['loss']} | {c['baseline']} | {c['task']} | {c['metric']} | {_fmt(c['mean_diff'])} | "
                f"{_fmt(c['welch_t'], 2)} ({_fmt(c['welch_df'], 1)}) | {_fmt_p(c['welch_p'])} | "
                f"{_fmt(c['iqm_loss'])} [{_fmt(c['iqm_loss_ci95_low'])}, {_fmt(c['iqm_loss_ci95_high'])}] | "
                f"{_fmt(c['iqm_baseline'])} [{_fmt(c['iqm_baseline_ci95_low'])}, {_fmt(c['iqm_baseline_ci95_high'])}] | "
                f"{_fmt(c['iqm_diff'])} [{_fmt(c['iqm_diff_ci95_low'])}, {_fmt(c['iqm_diff_ci95_high'])}] |")
    out += ["", "## Learning curves (mean over seeds; band: 95% t-interval of the mean)", ""]
    out += [f"![{p.stem}]({p.relative_to(run_dir)})" for p in plots]
    bad = [r for r in records if r["status"] != "done"]
    planned = len(plan["runs"])
    out += ["", "## Runs", "", f"{len(records)} of {planned} planned runs recorded: "
            f"{len(records) - len(bad)} done, {len(bad)} failed."]
    out += [f"- {r['key']}: {r['status']}: {r['failed']}" for r in bad]
    return "\n".join(out) + "\n"


def write_report(run_dir: str | os.PathLike) -> list[Path]:
    """Write every report file from the run folder's records; returns their paths."""
    run_dir = Path(run_dir)
    config, records = load(run_dir)
    plan = config["plan"]
    rows, comparison = summary_rows(plan, records), comparison_rows(plan, records)
    paths = [run_dir / n for n in ("curves.csv", "summary.csv", "comparison.csv", "summary.md")]
    write_csv(paths[0], curve_rows(records), ["loss", "agent", "task", "seed", "env_step", "return"])
    write_csv(paths[1], rows, list(rows[0]) if rows else ["loss"])
    write_csv(paths[2], comparison, list(comparison[0]) if comparison else ["loss", "baseline"])
    plots = plot_curves(plan, records, run_dir / "plots")
    atomic_write_text(paths[3], markdown(run_dir, config, records, rows, comparison, plots))
    return paths + plots
