"""How the search's protocol went (SPEC section 4b), from its run folder: candidates per
rung, environment steps used against training every candidate to the end, whether each
rung ranks like the top (Spearman over the first generation, which trains unstopped),
and the variance components of the genomes trained on several seeds."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sp

from search.report.run_data import Run


def aulc_up_to(curve: pd.DataFrame, step: float) -> float:
    """The approximate AULC of a run up to ``step``: the mean evaluation return over its
    checkpoints at or before it (SPEC section 4); NaN if the run never got there."""
    if curve.empty or curve["env_step"].max() < step:
        return math.nan
    return float(curve.loc[curve["env_step"] <= step, "return"].mean())


def _curves_by_run(run: Run) -> dict[tuple[str, int], pd.DataFrame]:
    if run.curves is None:
        return {}
    return {(gid, int(seed)): c.sort_values("env_step")
            for (gid, seed), c in run.curves.groupby(["id", "seed"])}


def _first_seed(row: dict) -> int | None:
    seeds = [s for s in str(row.get("seeds", "")).split(";") if s.strip()]
    return int(seeds[0]) if seeds else None


def rung_table(run: Run) -> pd.DataFrame:
    """Candidates (their first seeds) that got to each level: started, stopped there, went
    on; and the environment steps all runs used against running each to the top."""
    pop = run.population[run.population["status"].isin(("trained", "stopped", "failed"))]
    pop = pop.drop_duplicates("id")
    top = run.top_steps
    rows = []
    alive = len(pop)
    for rung in run.rungs:
        stopped = int(((pop["status"] == "stopped") & (pop["stopped_at"] == rung)).sum())
        rows.append({"level": f"rung {rung}", "env_steps": rung, "reached": alive,
                     "stopped": stopped, "went_on": alive - stopped})
        alive -= stopped
    finished = int((pop["status"] == "trained").sum())
    rows.append({"level": "top", "env_steps": top, "reached": alive, "stopped": 0,
                 "went_on": finished})
    return pd.DataFrame(rows, columns=["level", "env_steps", "reached", "stopped", "went_on"])


def steps_used(run: Run) -> dict[str, float]:
    """Environment steps of every run recorded (its curve's last checkpoint), against each
    of those runs trained to the top."""
    curves = _curves_by_run(run)
    top = run.top_steps
    used = sum(float(c["env_step"].max()) for c in curves.values())
    everything = len(curves) * top if top else math.nan
    return {"runs": len(curves), "env_steps_used": used, "env_steps_all_to_the_top": everything,
            "share": used / everything if everything else math.nan}


def spearman_by_rung(run: Run, steps: tuple[int, ...] | None = None) -> pd.DataFrame:
    """Per rung (or per checkpoint step given), the Spearman correlation of the AULC up to
    it with the AULC at the top, over the first generation's first seeds (trained to the
    top unstopped): where a rung may stop candidates without stopping them at random."""
    curves = _curves_by_run(run)
    top = run.top_steps
    first = run.population[(run.population["generation"] == 0) &
                           (run.population["status"] == "trained")].drop_duplicates("id")
    pairs = []
    for row in first.to_dict("records"):
        seed = _first_seed(row)
        curve = curves.get((row["id"], seed))
        if curve is not None and top and curve["env_step"].max() >= top:
            pairs.append(curve)
    if steps is None:
        steps = run.rungs
    rows = []
    for step in steps:
        at = [aulc_up_to(c, step) for c in pairs]
        end = [aulc_up_to(c, top) for c in pairs]
        rho, p = (sp.spearmanr(at, end) if len(pairs) >= 3 else (math.nan, math.nan))
        rows.append({"env_steps": step, "n": len(pairs), "spearman": float(rho), "p": float(p)})
    return pd.DataFrame(rows, columns=["env_steps", "n", "spearman", "p"])


def variance_components(run: Run) -> dict[str, float]:
    """Over genomes trained on two or more seeds to the top (finalists only): the variance
    of a seed's AULC within a genome, and between genomes (the variance of the genome
    means minus the mean within-genome variance over the seeds per genome)."""
    curves = _curves_by_run(run)
    top = run.top_steps
    means, withins, sizes = [], [], []
    for row in run.population[run.population["status"] == "trained"].drop_duplicates("id").to_dict("records"):
        seeds = [int(s) for s in str(row.get("seeds", "")).split(";") if s.strip()]
        values = [aulc_up_to(curves[(row["id"], s)], top) for s in seeds if (row["id"], s) in curves]
        values = [v for v in values if math.isfinite(v)]
        if len(values) >= 2:
            means.append(float(np.mean(values)))
            withins.append(float(np.var(values, ddof=1)))
            sizes.append(len(values))
    if len(means) < 2:
        return {"genomes": len(means), "within": math.nan, "between": math.nan,
                "seeds_per_genome": float(np.mean(sizes)) if sizes else math.nan}
    within = float(np.mean(withins))
    between = float(np.var(means, ddof=1) - np.mean([w / n for w, n in zip(withins, sizes)]))
    return {"genomes": len(means), "within": within, "between": between,
            "seeds_per_genome": float(np.mean(sizes))}
