"""search.report over synthetic run folders built from real genomes (no training)."""
from __future__ import annotations

import json
import math
import random
import shlex
import struct
import zlib
from pathlib import Path

import pandas as pd
import pytest

from spaces import NAMED_LOSSES, Genome, patterns, reject_reason
from spaces.genome import KINDS, max_offset
from search.report.search_report import ReportError, write_report

COLUMNS = ["id", "genome", "auxi_pred_horizon", "auxi_pred_input_s", "auxi_pred_input_a",
           "auxi_pred_input_r", "auxi_pred_input_s_", "auxi_pred_output_s", "auxi_pred_output_a",
           "auxi_pred_output_r", "auxi_pred_output_s_", "similarity_metric", "penalize_negative",
           "generation", "parents", "operator", "status", "reject_reason", "fitness",
           "final_return", "seeds", "steps", "wall_s", "worker", "error"]


def n_states(genome: Genome, side: str) -> int:
    return sum(1 for kind, _ in genome.side(side) if kind == "s")


def made_up_fitness(genome: Genome, rng: random.Random) -> float:
    # More states in the target than in the source scores higher: the report must find it.
    return 300.0 + 60.0 * (n_states(genome, "target") - n_states(genome, "source")) + rng.gauss(0, 20)


def flip(genome: Genome, rng: random.Random) -> Genome:
    side = rng.choice(("source", "target"))
    kind = rng.choice(KINDS)
    element = (kind, rng.randint(0, max_offset(kind, genome.horizon)))
    return genome.replace(**{side: genome.side(side) ^ {element}})


def row(genome: Genome, generation: int, parents, operator: str, status: str, rng, *,
        planted: bool = False) -> dict:
    fitness = made_up_fitness(genome, rng) if status == "trained" else math.nan
    if planted and status == "trained":
        fitness = min(1.0, max(0.0, fitness / 1000))
    return {"id": genome.id, "genome": str(genome), **genome.to_flags(), "generation": generation,
            "parents": ";".join(parents), "operator": operator, "status": status,
            "reject_reason": reject_reason(genome) or "", "fitness": fitness,
            "final_return": math.nan if planted or status != "trained" else fitness * 1.2,
            "seeds": "1;2" if status == "trained" else "", "steps": 2000, "wall_s": 3.0,
            "worker": "w0", "error": "diverged" if status == "failed" else ""}


def build_run(path: Path, *, generations: int = 5, per_generation: int = 24, task="cheetah_run",
              planted: bool = False, curves: bool = True) -> pd.DataFrame:
    """A population.csv as the search writes it: named losses, then mutated children of the
    top quarter, with rejected, duplicate and failed rows mixed in."""
    rng = random.Random(0)
    rows, seen = [], set()
    for g in NAMED_LOSSES.values():
        rows.append(row(g, 0, [], "initial", "trained", rng, planted=planted))
        seen.add(g.id)
    for gen in range(1, generations):
        trained = [r for r in rows if r["status"] == "trained"]
        survivors = sorted(trained, key=lambda r: -r["fitness"])[:max(2, len(trained) // 4)]
        for _ in range(per_generation):
            a, b = rng.sample(survivors, 2)
            parent = Genome.parse(a["genome"])
            if rng.random() < 0.3:  # crossover by offset: one side from each parent
                child, parents, op = parent.replace(
                    horizon=max(parent.horizon, Genome.parse(b["genome"]).horizon),
                    target=Genome.parse(b["genome"]).target), [a["id"], b["id"]], "crossover"
            else:
                child, parents, op = flip(parent, rng), [a["id"]], "bitflip"
            status = ("duplicate" if child.id in seen else "rejected" if reject_reason(child)
                      else "failed" if rng.random() < 0.05 else "trained")
            seen.add(child.id)
            rows.append(row(child, gen, parents, op, status, rng, planted=planted))
    df = pd.DataFrame(rows, columns=COLUMNS)
    path.mkdir(parents=True, exist_ok=True)
    df.to_csv(path / "population.csv", index=False)
    config = {"engine": {"strategy": "generational", "population": per_generation}}
    if planted:
        config["planted"] = str(NAMED_LOSSES["a2-winner"])
    else:
        config["train"] = {"domain_name": task, "encoder_type": "ofe"}
    (path / "config.json").write_text(json.dumps(config))
    if curves and not planted:
        curve_rows = [{"id": r["id"], "seed": seed, "env_step": step,
                       "return": r["fitness"] * step / 2000 + seed}
                      for r in rows if r["status"] == "trained"
                      for seed in (1, 2) for step in (0, 1000, 2000)]
        pd.DataFrame(curve_rows).to_csv(path / "curves.csv", index=False)
    return df


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    assert data[12:16] == b"IHDR" and width > 200 and height > 150, (path, width, height)
    # Every chunk's CRC holds: the file is whole, not truncated.
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        pos += 12 + length
    assert kind == b"IEND"


def parse_train_args(text: str) -> dict:
    argv = shlex.split(text)
    assert argv[:2] == ["python", "train.py"]
    flags, i = {}, 2
    while i < len(argv):
        name = argv[i].removeprefix("--")
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            flags[name], i = argv[i + 1], i + 2
        else:
            flags[name], i = True, i + 1
    return flags


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = tmp_path_factory.mktemp("results") / "cheetah_demo"
    population = build_run(run)
    result = write_report(run, top_k=5)
    return run, population, result


def test_writes_every_file(report):
    run, _, result = report
    out = run / "report"
    for name in ("top_k.csv", "top_k.md", "generations.csv", "generations.md", "lineage.md",
                 "patterns.csv", "patterns.md", "report.txt", "fitness.png", "elements.png",
                 "curves.png"):
        assert (out / name).stat().st_size > 0, name
        assert str(out / name) in result["files"]
    for name in ("fitness.png", "elements.png", "curves.png"):
        assert_png(out / name)


def test_top_k_sorted_and_flags_parse_back(report):
    run, population, result = report
    top = pd.read_csv(run / "report" / "top_k.csv", dtype={"id": str})
    trained = population[population["status"] == "trained"]
    assert list(top["rank"]) == [1, 2, 3, 4, 5]
    assert list(top["fitness"]) == sorted(top["fitness"], reverse=True)
    assert top["fitness"].iloc[0] == pytest.approx(trained["fitness"].max())
    assert (top["n_seeds"] == 2).all() and top["final_return"].notna().all()
    for r in top.to_dict("records"):
        genome = Genome.from_flags(parse_train_args(r["train_args"]))
        assert str(genome) == r["genome"] and genome.id == r["id"]
    assert result["best"]["id"] == top["id"].iloc[0]


def test_generation_table_counts_match_population(report):
    run, population, _ = report
    gens = pd.read_csv(run / "report" / "generations.csv")
    assert list(gens["generation"]) == sorted(population["generation"].unique())
    for status in ("rejected", "duplicate", "failed"):
        assert gens[status].sum() == (population["status"] == status).sum()
    assert gens["trained"].sum() == population[population["status"] == "trained"]["id"].nunique()
    assert (gens["q25"] <= gens["median"]).all() and (gens["median"] <= gens["q75"]).all()
    assert gens["best_so_far"].is_monotonic_increasing
    assert gens["duplicate"].sum() > 0 and gens["rejected"].sum() > 0  # the fixture covers them


def test_patterns_find_the_planted_effect(report):
    run, population, _ = report
    pats = pd.read_csv(run / "report" / "patterns.csv").set_index("pattern")
    more_s = pats.loc["more_s_in_target"]
    assert more_s["diff"] > 0 and more_s["p"] < 0.05 and more_s["sig"] in ("*", "**")
    trained = population[population["status"] == "trained"].drop_duplicates("id")
    with_s = [patterns(Genome.parse(g))["more_s_in_target"] for g in trained["genome"]]
    assert more_s["n_with"] == sum(with_s) and more_s["n_without"] == len(with_s) - sum(with_s)
    # The run's task is cheetah_run: the paper's vector row sits beside ours.
    assert pats.loc["more_s_in_target", "paper Cheetah-Run (vector)"] == "+188**"


def test_lineage_reaches_an_initial_candidate(report):
    run, population, result = report
    entries = result["lineage"]
    assert entries[0]["id"] == result["best"]["id"] and entries[0]["depth"] == 0
    initial = {r["id"] for r in population.to_dict("records") if r["generation"] == 0}
    assert any(e["id"] in initial and e["note"] == "initial candidate" for e in entries)
    # Every listed parent is itself listed: the walk followed every id back.
    listed = {e["id"] for e in entries}
    assert all(p in listed for e in entries for p in e.get("parents", []))
    assert "initial candidate" in (run / "report" / "lineage.md").read_text()


def test_prints_a_readable_report(tmp_path, capsys):
    build_run(tmp_path / "run", generations=3, per_generation=12)
    write_report(tmp_path / "run", top_k=3)
    out = capsys.readouterr().out
    for heading in ("Top 3 by search rank", "Generations", "Lineage of the best", "Loss patterns",
                    "python train.py --domain_name cheetah_run --encoder_type ofe --auxi_pred_horizon",
                    "report written to"):
        assert heading in out


def test_planted_run_without_returns_or_curves(tmp_path):
    build_run(tmp_path / "planted", generations=3, per_generation=12, planted=True)
    result = write_report(tmp_path / "planted", top_k=3)
    out = tmp_path / "planted" / "report"
    assert not (out / "curves.png").exists() and (out / "fitness.png").exists()
    assert result["top_k"]["final_return"].isna().all()
    assert not any(c.startswith("paper") for c in result["patterns"].columns)
    assert "planted" in result["text"]


def test_other_task_has_no_paper_column(tmp_path):
    build_run(tmp_path / "walker", generations=2, per_generation=8, task="walker_walk", curves=False)
    result = write_report(tmp_path / "walker", top_k=2)
    assert not any(c.startswith("paper") for c in result["patterns"].columns)
    assert not (tmp_path / "walker" / "report" / "curves.png").exists()


def test_small_groups_give_nan_not_a_crash(tmp_path):
    df = build_run(tmp_path / "tiny", generations=1)  # the named losses only
    df = df.head(3)
    df.to_csv(tmp_path / "tiny" / "population.csv", index=False)
    result = write_report(tmp_path / "tiny", top_k=5)
    assert len(result["top_k"]) == 3
    pats = result["patterns"].set_index("pattern")
    small = pats[(pats["n_with"] < 2) | (pats["n_without"] < 2)]
    assert len(small) and small["p"].isna().all() and (small["sig"] == "").all()


def test_no_trained_rows_is_a_short_report(tmp_path, capsys):
    df = build_run(tmp_path / "empty", generations=2, per_generation=8)
    df = df.assign(status="rejected", fitness=math.nan)
    df.to_csv(tmp_path / "empty" / "population.csv", index=False)
    result = write_report(tmp_path / "empty")
    assert result["n_trained"] == 0 and result["best"] is None
    assert "No trained candidates" in capsys.readouterr().out
    assert not (tmp_path / "empty" / "report" / "top_k.csv").exists()


def test_header_only_population(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "population.csv").write_text(",".join(COLUMNS) + "\n")
    assert write_report(tmp_path / "run")["n_trained"] == 0


def test_folder_without_population_is_one_line_error(tmp_path):
    with pytest.raises(ReportError) as e:
        write_report(tmp_path)
    assert str(tmp_path) in str(e.value) and "population.csv" in str(e.value)
    assert "\n" not in str(e.value) and isinstance(e.value, ValueError)
    assert not (tmp_path / "report").exists()  # nothing written
    with pytest.raises(ReportError, match="no such run folder"):
        write_report(tmp_path / "missing")


def test_broken_population_is_one_line_error(tmp_path):
    (tmp_path / "population.csv").write_text("id,genome\nabc,k1 s10/a1/r0 > s01/a0/r0 mse\n")
    with pytest.raises(ReportError, match="missing column.*status") as e:
        write_report(tmp_path)
    assert str(tmp_path / "population.csv") in str(e.value) and "\n" not in str(e.value)
    df = build_run(tmp_path / "bad", generations=1)
    df.loc[1, "genome"] = "k1 nonsense"
    df.to_csv(tmp_path / "bad" / "population.csv", index=False)
    with pytest.raises(ReportError, match="row 3") as e:
        write_report(tmp_path / "bad")
    assert "\n" not in str(e.value)
    with pytest.raises(ReportError, match="--top"):
        write_report(tmp_path / "bad", top_k=0)


def test_rebuild_removes_stale_files(tmp_path):
    df = build_run(tmp_path / "run", generations=2, per_generation=8)
    write_report(tmp_path / "run")
    assert (tmp_path / "run" / "report" / "curves.png").exists()
    (tmp_path / "run" / "curves.csv").unlink()
    df.assign(status="failed", fitness=math.nan).to_csv(tmp_path / "run" / "population.csv", index=False)
    write_report(tmp_path / "run")
    left = {p.name for p in (tmp_path / "run" / "report").iterdir()}
    assert left == {"generations.csv", "generations.md", "report.txt", "report.md"}
