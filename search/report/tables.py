"""The report's tables: top-k, generations, lineage of the best, loss patterns (Table 5)."""
from __future__ import annotations

import math
import shlex

import numpy as np
import pandas as pd

from spaces import PATTERNS, Genome, GenomeError, patterns
from search.report.run_data import Run
from search.report.stats import welch_t_test

FLAG_COLUMNS = ("auxi_pred_horizon", "auxi_pred_input_s", "auxi_pred_input_a", "auxi_pred_input_r",
                "auxi_pred_input_s_", "auxi_pred_output_s", "auxi_pred_output_a",
                "auxi_pred_output_r", "auxi_pred_output_s_", "similarity_metric", "penalize_negative")

# Paper Table 5, vector rows (SPEC section 5): score with the pattern minus without.
PAPER_TABLE5_VECTOR: dict[str, tuple[str, dict[str, str]]] = {
    task: (label, dict(zip(PATTERNS, cells))) for task, label, cells in (
        ("cheetah_run", "Cheetah-Run (vector)",
         ("+94**", "-24**", "-33**", "-109**", "-50**", "+188**", "-103**", "-94**")),
        ("hopper_hop", "Hopper-Hop (vector)",
         ("+16**", "-16**", "-11*", "-32**", "-26**", "+20**", "-30**", "-5")),
        ("quadruped_run", "Quadruped-Run (vector)",
         ("-28", "-18", "-114**", "-105**", "-82**", "+75**", "-4", "-47*")),
    )}


# ------------------------------------------------------------------ top-k
def row_genome(row: dict) -> Genome:
    """The genome as the search trained it: from the A2LS flag columns when they agree with
    the canonical ``genome`` column (they keep the horizon used), else the canonical form."""
    canonical = Genome.parse(row["genome"])
    if all(str(row.get(c, "")).strip() for c in FLAG_COLUMNS[:-1]):
        flags = {c: str(row[c]).strip() for c in FLAG_COLUMNS}
        flags["penalize_negative"] = flags.get("penalize_negative", "").lower() in ("true", "1")
        try:
            trained = Genome.from_flags(flags)
        except GenomeError:
            return canonical
        if str(trained) == str(canonical):
            return trained
    return canonical


# TrainConfig fields that a "train it again" command never carries.
_NOT_FLAGS = ("genome", "genome_canonical", "seed", "work_dir", "save_tb", "save_buffer",
              "save_video", "save_model", "device")


def training_flags(train: dict | None) -> list[str]:
    """The flags a candidate was trained with (config.json's ``train``), where they differ
    from train.py's defaults for the same task: task, encoder, sizes, steps, ..."""
    if not train:
        return []
    from rl.config import TrainConfig, resolve

    fields = {f for f in TrainConfig.__dataclass_fields__ if f not in _NOT_FLAGS}
    task = {k: train[k] for k in ("domain_name", "task_name") if train.get(k) is not None}
    defaults = resolve(TrainConfig(**task)).to_dict()
    argv = []
    for key in sorted(fields & set(train), key=list(TrainConfig.__dataclass_fields__).index):
        value = train[key]
        if key == "auxi_batchsize" and value == train.get("batch_size"):
            continue  # follows --batch_size (the only value the code allows)
        if key in task or value != defaults.get(key):
            if isinstance(value, bool):
                if key == "auxi_ema":  # a store_false flag: given, it turns the EMA off
                    argv += [] if value else ["--auxi_ema"]
                elif value:
                    argv.append(f"--{key}")
            elif value is not None:
                argv += [f"--{key}", str(value)]
    return argv


def train_args(genome: Genome, train: dict | None = None) -> str:
    """Ready-to-paste ``python train.py ...``: the training flags and the genome's."""
    return shlex.join(["python", "train.py", *training_flags(train), *genome.to_argv()])


def top_k_table(run: Run, k: int) -> pd.DataFrame:
    """The best ``k`` as the search ranks them (finalists first, then by the rung reached)."""
    best = run.ranked.head(max(0, k))
    train = run.config.get("train")
    rows = []
    for rank, row in enumerate(best.to_dict("records"), 1):
        seeds = [s for s in str(row.get("seeds", "")).split(";") if s.strip()]
        rows.append({
            "rank": rank, "id": row["id"], "status": row["status"], "fitness": row["fitness"],
            "fitness_se": row.get("fitness_se", math.nan), "final_return": row["final_return"],
            "stopped_at": row.get("stopped_at", math.nan), "seeds": ";".join(seeds),
            "n_seeds": len(seeds), "generation": row["generation"], "operator": row["operator"],
            "genome": row["genome"], "train_args": train_args(row_genome(row), train)})
    columns = ["rank", "id", "status", "fitness", "fitness_se", "final_return", "stopped_at",
               "seeds", "n_seeds", "generation", "operator", "genome", "train_args"]
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------ generations
# "running": a genome whose seeds are still out (the search writes the table as it goes).
STATUS_COUNTS = ("stopped", "rejected", "duplicate", "failed", "running")


def generations_table(run: Run) -> pd.DataFrame:
    """Fitness quantiles of the trained candidates and status counts, per generation."""
    pop = run.population.dropna(subset=["generation"])
    trained = run.trained.dropna(subset=["generation"])
    columns = ["generation", "trained", "best", "q25", "median", "q75", "best_so_far",
               "stopped", "rejected", "duplicate", "failed", "running"]
    if pop.empty:
        return pd.DataFrame(columns=columns)
    gens = sorted(int(g) for g in pop["generation"].unique())
    counts = pop.groupby(["generation", "status"]).size()
    rows, best_so_far = [], math.nan
    for g in gens:
        fit = trained.loc[trained["generation"] == g, "fitness"]
        if len(fit):
            best_so_far = max(fit.max(), best_so_far) if math.isfinite(best_so_far) else fit.max()
        q = fit.quantile([0.25, 0.5, 0.75]) if len(fit) else pd.Series([math.nan] * 3)
        rows.append({"generation": g, "trained": len(fit), "best": fit.max(),
                     "q25": q.iloc[0], "median": q.iloc[1], "q75": q.iloc[2],
                     "best_so_far": best_so_far,
                     **{s: int(counts.get((g, s), 0)) for s in STATUS_COUNTS}})
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- lineage
def lineage(run: Run, start_id: str) -> list[dict]:
    """Ancestors of ``start_id``, depth first: every parent id is followed back until a
    candidate without parents (the initial generation). Each ancestor is listed once."""
    rows = run.by_id()
    out: list[dict] = []
    seen: set[str] = set()

    def visit(cid: str, depth: int) -> None:
        row = rows.get(cid)
        entry = {"depth": depth, "id": cid}
        if row is None:
            out.append({**entry, "note": "not in the population"})
            return
        parents = [p for p in str(row.get("parents", "")).split(";") if p.strip()]
        entry.update(generation=row["generation"], operator=row.get("operator", ""),
                     status=row["status"], fitness=row["fitness"], genome=row["genome"],
                     parents=parents)
        if cid in seen:
            out.append({**entry, "note": "listed above"})
            return
        seen.add(cid)
        out.append({**entry, "note": "" if parents else "initial candidate"})
        for parent in parents:
            visit(parent, depth + 1)

    visit(start_id, 0)
    return out


def lineage_markdown(entries: list[dict]) -> str:
    lines = []
    for e in entries:
        head = f"{'  ' * e['depth']}- `{e['id']}`"
        if "genome" not in e:
            lines.append(f"{head}: {e['note']}")
            continue
        gen = "?" if pd.isna(e["generation"]) else int(e["generation"])
        text = (f"{head} gen {gen}, {e['operator'] or '?'}, {e['status']}, "
                f"fitness {fmt(e['fitness'])}: `{e['genome']}`")
        lines.append(text + (f" ({e['note']})" if e["note"] else ""))
    return "\n".join(lines)


# --------------------------------------------------------------- patterns
def welch(with_: np.ndarray, without: np.ndarray) -> tuple[float, float]:
    """Welch's t statistic and p-value (search.report.stats); NaN when a group has < 2 members."""
    result = welch_t_test(with_, without)
    return result.t, result.p


def stars(p: float) -> str:
    if not math.isfinite(p):
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def pattern_scores(run: Run) -> tuple[pd.DataFrame, str]:
    """The genomes and the score the pattern analysis compares, and what that score is.
    With rungs, candidates stopped at different rungs have fitnesses over different steps:
    every candidate is then scored by its first seed's AULC up to the first rung, which
    each one trained."""
    if not run.rungs or run.curves is None:
        return run.trained, "fitness"
    from search.report.protocol import aulc_up_to

    ranked = run.ranked
    rung = run.rungs[0]
    scores = []
    for row in ranked.to_dict("records"):
        seed = str(row.get("seeds", "")).split(";")[0]
        curve = run.curves[(run.curves["id"] == row["id"]) & (run.curves["seed"] == seed)]
        scores.append(aulc_up_to(curve, rung))
    scored = ranked.assign(fitness=scores)
    return scored[np.isfinite(scored["fitness"])].reset_index(drop=True), \
        f"approx AULC up to the first rung ({rung} env steps)"


def patterns_table(run: Run) -> pd.DataFrame:
    """Paper Table 5 over the trained population: mean score with minus without, beside the
    paper's row for the task where it has one (same sign or not)."""
    trained, _ = pattern_scores(run)
    fitness = trained["fitness"].to_numpy(dtype=float)
    has = pd.DataFrame([patterns(g) for g in trained["genome_obj"]], columns=list(PATTERNS))
    paper = PAPER_TABLE5_VECTOR.get(run.task or "") if not run.planted else None
    rows = []
    for name in PATTERNS:
        mask = has[name].to_numpy(dtype=bool) if len(has) else np.zeros(0, dtype=bool)
        a, b = fitness[mask], fitness[~mask]
        mean_a = float(a.mean()) if len(a) else math.nan
        mean_b = float(b.mean()) if len(b) else math.nan
        t, p = welch(a, b)
        row = {"pattern": name, "n_with": len(a), "n_without": len(b), "mean_with": mean_a,
               "mean_without": mean_b, "diff": mean_a - mean_b, "t": t, "p": p, "sig": stars(p)}
        if paper:
            cell = paper[1][name]
            row[f"paper {paper[0]}"] = cell
            same = (math.copysign(1, row["diff"]) == (1 if cell.startswith("+") else -1)
                    if math.isfinite(row["diff"]) else None)
            row["same_sign"] = "" if same is None else ("yes" if same else "no")
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------- formatting
def fmt(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if not math.isfinite(x):
            return "" if math.isnan(x) else str(x)
        return str(int(x)) if x == int(x) and abs(x) < 1e15 and abs(x) >= 1 else f"{x:.4g}"
    return "" if x is None else str(x)


def to_markdown(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    cols = list(columns or df.columns)
    if df.empty:
        return "(none)"
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df[cols].itertuples(index=False):
        cells = [fmt(v).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_text(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    cols = list(columns or df.columns)
    if df.empty:
        return "  (none)"
    cells = [[fmt(v) for v in row] for row in df[cols].itertuples(index=False)]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    # Numbers right-aligned, text left-aligned, as people read tables.
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in cols]
    def line(values):
        return "  " + "  ".join(v.rjust(w) if n else v.ljust(w)
                                for v, w, n in zip(values, widths, numeric)).rstrip()
    return "\n".join([line(cols)] + [line(r) for r in cells])
