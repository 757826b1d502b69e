"""``search.py report``: what a search run found, as text, tables and figures.

Reads results/NAME/population.csv (and curves.csv, config.json when present) and writes
results/NAME/report/: top_k, generations, lineage, patterns (the paper's Table 5
loss-pattern analysis, SPEC section 5) and PNG figures. Everything is derived from the
run folder, so a report can be rebuilt at any time, also while the search still runs.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from search.report import plots
from search.report.run_data import ReportError, Run, load_run
from search.report import protocol, verdict_report
from search.report.tables import (generations_table, lineage, lineage_markdown, pattern_scores,
                                  patterns_table,
                                  to_markdown, to_text, top_k_table)

__all__ = ["ReportError", "write_report"]

TOP_COLUMNS = ["rank", "id", "status", "fitness", "fitness_se", "stopped_at", "final_return",
               "n_seeds", "generation", "operator", "genome"]
# Every file a report may write; those a rebuild does not write again are removed, so a
# folder never mixes a fresh report with stale figures of an earlier one.
OUTPUTS = ("top_k.csv", "top_k.md", "generations.csv", "generations.md", "lineage.md",
           "patterns.csv", "patterns.md", "fitness.png", "elements.png", "curves.png", "report.txt",
           "verdict.csv", "verdict.md", "verdict.png", "protocol.md", "rungs.csv", "spearman.csv",
           "report.md")
PATTERN_NOTE = ("mean {score} of the genomes with the pattern minus without; Welch t-test; "
                "** p<0.01, * p<0.05; a pattern holds if it holds at some offset j (SPEC section 5)")


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text if text.endswith("\n") else text + "\n")
    os.replace(tmp, path)
    return path


def _write_csv(path: Path, df: pd.DataFrame) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def _describe(run: Run) -> str:
    status = run.population["status"].value_counts()
    shown = (["trained"] + (["stopped"] if "stopped" in status else []) +
             ["rejected", "duplicate", "failed"] + (["running"] if "running" in status else []))
    counts = ", ".join(f"{int(status.get(s, 0))} {s}" for s in shown)
    task = run.task or "task unknown"
    if run.from_pixels is not None:
        task += " (pixels)" if run.from_pixels else " (states)"
    kind = "planted fitness (similarity to a planted genome)" if run.planted else "fitness = approx AULC"
    return f"run {run.path}: {task}; {len(run.population)} rows: {counts}; {kind}"


def _head(text: str, where: str, lines: int = 30) -> str:
    """The first lines of a long section for the terminal; the file holds all of it."""
    split = text.splitlines()
    if len(split) <= lines:
        return text
    return "\n".join(split[:lines] + [f"  ... {len(split) - lines} more lines in {where}"])


def _fitness_label(run: Run) -> str:
    return "fitness (similarity to planted genome)" if run.planted else "fitness (approx. AULC)"


def write_report(run_dir: str | os.PathLike, top_k: int = 5) -> dict[str, Any]:
    """Write results/NAME/report/ and print the report.

    Args:
        run_dir: the search run folder (holds population.csv).
        top_k: how many of the best trained genomes to list and plot.
    Returns:
        ``{"report_dir", "files", "n_trained", "text", "top_k", "generations", "patterns",
        "lineage", "best"}``; the tables are DataFrames, ``best`` is the top row as a dict
        (None when nothing was trained).
    Raises:
        ReportError: the folder holds no readable population.csv (nothing is written).
    """
    if top_k < 1:
        raise ReportError(f"--top: expected a positive integer, got {top_k}")
    run = load_run(run_dir)  # every input check happens before anything is written
    out = run.path / "report"
    out.mkdir(exist_ok=True)
    files: list[Path] = []
    trained = run.trained
    generations = generations_table(run)
    files.append(_write_csv(out / "generations.csv", generations))
    files.append(_write(out / "generations.md", f"# Generations: {run.name}\n\n"
                        f"{_describe(run)}\n\nTrained candidates only in the quantiles.\n\n"
                        + to_markdown(generations)))
    sections = verdict_section(run, out, files) + protocol_section(run, out, files)
    sections += [_describe(run), "", "Generations (fitness of trained candidates):", to_text(generations)]
    result: dict[str, Any] = {"report_dir": str(out), "files": files, "n_trained": len(trained),
                              "generations": generations, "top_k": None, "patterns": None,
                              "lineage": [], "best": None}
    if run.ranked.empty:
        sections += ["", f"No trained candidates in {run.path}: nothing to rank, "
                     "no lineage, no pattern analysis."]
    else:
        sections += _ranked_sections(run, trained, generations, top_k, out, files, result)
    text = "\n".join(sections)
    files.append(_write(out / "report.txt", text))
    parts = [p for p in ("verdict.md", "protocol.md", "top_k.md", "patterns.md", "generations.md")
             if (out / p) in files]
    files.append(_write(out / "report.md", f"# Search report: {run.name}\n\n{_describe(run)}\n\n"
                        + "\n\n".join((out / p).read_text().strip() for p in parts)))
    for stale in set(OUTPUTS) - {p.name for p in files}:
        (out / stale).unlink(missing_ok=True)
    print(text)
    print(f"\nreport written to {out}/ ({', '.join(p.name for p in files)})")
    result["text"] = text
    result["files"] = [str(p) for p in files]
    return result


def _ranked_sections(run: Run, trained: pd.DataFrame, generations: pd.DataFrame, top_k: int,
                     out: Path, files: list[Path], result: dict[str, Any]) -> list[str]:
    """Everything that needs at least one trained genome; appends to ``files``/``result``."""
    top = top_k_table(run, top_k)
    best = top.iloc[0].to_dict()
    commands = "\n\n".join(f"{r['rank']}. `{r['id']}` (fitness {r['fitness']:.4g})\n\n"
                           f"```\n{r['train_args']}\n```" for r in top.to_dict("records"))
    files.append(_write_csv(out / "top_k.csv", top))
    files.append(_write(out / "top_k.md", f"# Top {len(top)} of {run.name}\n\n{_describe(run)}\n\n"
                        f"{to_markdown(top, TOP_COLUMNS)}\n\n## Train them again\n\n{commands}"))

    ancestors = lineage(run, best["id"])
    initial = sum(1 for e in ancestors if e.get("note") == "initial candidate")
    files.append(_write(out / "lineage.md", f"# Lineage of the best genome of {run.name}\n\n"
                        f"`{best['id']}` `{best['genome']}`, fitness {best['fitness']:.4g}. "
                        f"Each candidate lists its parents below it, back to the initial "
                        f"generation ({len(ancestors)} entries, {initial} initial).\n\n"
                        + lineage_markdown(ancestors)))

    pats = patterns_table(run)
    files.append(_write_csv(out / "patterns.csv", pats))
    paper = [c for c in pats.columns if c.startswith("paper")]
    note = PATTERN_NOTE.format(score=pattern_scores(run)[1])
    if paper and run.from_pixels:
        note += "; the paper's rows are from its vector (state) search, this run used pixels"
    if run.planted:
        note += "; planted fitness: no RL score, so no paper rows beside it"
    files.append(_write(out / "patterns.md", f"# Loss patterns (paper Table 5): {run.name}\n\n"
                        f"{_describe(run)}\n\n{note}.\n\n{to_markdown(pats)}"))

    title = f"{run.name}: {run.task or ''}".rstrip(": ")
    files.append(plots.fitness_plot(trained, generations, out / "fitness.png",
                                    title=f"Fitness over generations - {title}",
                                    ylabel=_fitness_label(run)))
    for made in (plots.elements_plot(trained, out / "elements.png",
                                     title=f"Element frequency, top quarter vs rest - {title}"),
                 plots.curves_plot(run.curves, top, out / "curves.png",
                                   title=f"Learning curves of the top {len(top)} - {title}")
                 if run.curves is not None else None):
        if made is not None:
            files.append(made)

    result.update(top_k=top, patterns=pats, lineage=ancestors, best=best)
    return ["", f"Top {len(top)} by search rank (the furthest rung, then fitness):",
            to_text(top, TOP_COLUMNS), "",
            "Train them again:", *(f"  {r['rank']}. {r['train_args']}" for r in top.to_dict("records")),
            "", f"Lineage of the best ({best['id']}):", _head(lineage_markdown(ancestors), "lineage.md"), "",
            f"Loss patterns (paper Table 5): {note}.", to_text(pats)]


def verdict_section(run: Run, out: Path, files: list[Path]) -> list[str]:
    """The held-out verdict (first in the report), recomputed from verdict/'s runs."""
    loaded = verdict_report.load_verdict(run.path)
    if loaded is None:
        return []
    named, config, records = loaded
    table = verdict_report.verdict_table(config, records)
    files.append(_write_csv(out / "verdict.csv", table))
    plot = verdict_report.plot_curves(config, records, out / "verdict.png")
    if plot is not None:
        files.append(plot)
    files.append(_write(out / "verdict.md", verdict_report.markdown(named, config, records, table,
                                                                     plot, out)))
    return ["Verdict on held-out seeds (winners named before any of these runs):",
            *verdict_report.text(table), ""]


def protocol_section(run: Run, out: Path, files: list[Path]) -> list[str]:
    """Rungs, steps used, Spearman per rung, variance components (runs with rungs)."""
    if not run.rungs or run.curves is None:
        return []
    rungs = protocol.rung_table(run)
    used = protocol.steps_used(run)
    spearman = protocol.spearman_by_rung(run)
    variance = protocol.variance_components(run)
    files.append(_write_csv(out / "rungs.csv", rungs))
    files.append(_write_csv(out / "spearman.csv", spearman))
    steps = (f"{used['env_steps_used']:.0f} env steps in {used['runs']} runs, "
             f"{used['share']:.0%} of training each of them to the top "
             f"({used['env_steps_all_to_the_top']:.0f})")
    var = (f"finalists only: {variance['genomes']} genomes, {variance['seeds_per_genome']:.1f} seeds "
           f"each: within-genome variance {variance['within']:.4g} (std {math.sqrt(variance['within']):.4g}), "
           f"between-genome {variance['between']:.4g}" if variance["genomes"] >= 2 else
           "finalists only: fewer than two genomes with two seeds or more")
    files.append(_write(out / "protocol.md", "\n".join([
        "## Protocol: rungs, seeds, steps", "", to_markdown(rungs), "", f"Steps: {steps}.", "",
        "Spearman correlation of the AULC up to each rung with the AULC at the top, over the "
        "first generation's first seeds (trained to the top unstopped):", "",
        to_markdown(spearman), "", f"Variance components of the AULC at the top, {var}."])))
    return ["Protocol:", to_text(rungs), f"  steps: {steps}", "  Spearman (first generation):",
            to_text(spearman), f"  variance components, {var}", ""]
