"""The report's figures (matplotlib, Agg backend: no display on a cluster node)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from spaces.genome import KINDS, SIDES, max_offset  # noqa: E402

KIND_NAMES = {"s": "state", "a": "action", "r": "reward"}


def _save(fig, path: Path) -> Path:
    """Write atomically: a half-written PNG never replaces a good one."""
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def fitness_plot(trained: pd.DataFrame, generations: pd.DataFrame, path: Path, *,
                 title: str, ylabel: str) -> Path:
    """Every trained candidate (jittered), the median and the best so far, per generation."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    df = trained.dropna(subset=["generation"])
    rng = np.random.default_rng(0)  # fixed jitter: the same run gives the same picture
    x = df["generation"].to_numpy(float) + rng.uniform(-0.15, 0.15, len(df))
    ax.scatter(x, df["fitness"], s=14, alpha=0.45, color="tab:blue", label="trained candidate")
    g = generations[generations["trained"] > 0]
    ax.plot(g["generation"], g["median"], "o-", color="tab:orange", label="median of generation")
    ax.step(generations["generation"], generations["best_so_far"], where="post",
            color="tab:green", linewidth=2, label="best so far")
    ax.set_xlabel("generation")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(generations) and len(generations) <= 30:
        ax.set_xticks(generations["generation"])
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def element_frequencies(genomes: list, max_h: int) -> np.ndarray:
    """(sides*kinds, offsets) fraction of ``genomes`` holding each (side, kind, offset);
    NaN where the element cannot exist (actions and rewards stop at offset k-1)."""
    out = np.full((len(SIDES) * len(KINDS), max_h + 1), np.nan)
    for i, (side, kind) in enumerate((s, k) for s in SIDES for k in KINDS):
        for offset in range(max_offset(kind, max_h) + 1):
            out[i, offset] = (np.mean([(kind, offset) in g.side(side) for g in genomes])
                              if genomes else np.nan)
    return out


def elements_plot(trained: pd.DataFrame, path: Path, *, title: str) -> Path | None:
    """How often each element appears in the top quarter by fitness versus the rest."""
    if len(trained) < 2:
        return None
    ranked = trained.sort_values("fitness", ascending=False)
    n_top = max(1, math.ceil(len(ranked) / 4))
    top, rest = list(ranked["genome_obj"][:n_top]), list(ranked["genome_obj"][n_top:])
    max_h = max(g.horizon for g in ranked["genome_obj"])
    f_top, f_rest = element_frequencies(top, max_h), element_frequencies(rest, max_h)
    panels = [(f_top, f"top quarter by fitness (n={len(top)})", "viridis", (0, 1), "fraction"),
              (f_rest, f"rest (n={len(rest)})", "viridis", (0, 1), "fraction"),
              (f_top - f_rest, "top quarter minus rest", "RdBu", (-1, 1), "difference")]
    rows = [f"{side} {KIND_NAMES[kind]}" for side in SIDES for kind in KINDS]
    fig, axes = plt.subplots(3, 1, figsize=(2.5 + 0.62 * (max_h + 1), 8.4), sharex=True)
    for ax, (data, name, cmap, (lo, hi), what) in zip(axes, panels):
        im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        for (r, c), v in np.ndenumerate(data):
            if np.isfinite(v):
                light = (v - lo) / (hi - lo)
                dark_text = 0.3 < light < 0.8 if cmap == "RdBu" else light > 0.6
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if dark_text else "white")
        ax.set_title(name, fontsize=10)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.axhline(2.5, color="black", linewidth=1)  # source above, target below
        fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label=what)
    axes[-1].set_xticks(range(max_h + 1))
    axes[-1].set_xlabel("time offset j (element at t+j); blank: no action/reward at t+k")
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def curves_plot(curves: pd.DataFrame, top: pd.DataFrame, path: Path, *, title: str) -> Path | None:
    """Evaluation return against env steps for the top-k: mean over seeds, seeds faint."""
    ids = list(top["id"])
    data = curves[curves["id"].isin(ids)]
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = plt.get_cmap("tab10")
    for i, row in enumerate(top.to_dict("records")):
        c = data[data["id"] == row["id"]]
        if c.empty:
            continue
        colour = colours(i % 10)
        for _, seed in c.groupby("seed"):
            seed = seed.sort_values("env_step")
            ax.plot(seed["env_step"], seed["return"], color=colour, alpha=0.25, linewidth=1)
        mean = c.groupby("env_step")["return"].mean()
        label = f"#{row['rank']} {row['id']} (fitness {row['fitness']:.4g}, {c['seed'].nunique()} seeds)"
        ax.plot(mean.index, mean.to_numpy(), "o-", color=colour, markersize=3, label=label)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)
