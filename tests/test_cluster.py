"""A real two-node Ray cluster on this machine (ray.cluster_utils.Cluster, 1 CPU a node),
started outside the repository from a Python that cannot import this project: search.py
and evaluate.py join it with --address and its token, their code reaches the workers
through the runtime environment, trials run on both nodes, and the search survives losing
the worker node mid-run. Also: a driver without the token gets one clear line."""
from __future__ import annotations

import csv
import json
import os
import site
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spaces import Genome

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

CLUSTER = textwrap.dedent("""
    import json, os, sys, time
    from ray.cluster_utils import Cluster

    control = sys.argv[1]
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address, "head": cluster.head_node.node_id,
                      "worker": worker.node_id}), flush=True)
    while not os.path.exists(os.path.join(control, "stop")):
        if worker is not None and os.path.exists(os.path.join(control, "kill-worker")):
            cluster.remove_node(worker, allow_graceful=False)  # as a lost machine: no goodbye
            worker = None
            print("worker node killed", flush=True)
        time.sleep(0.1)
    cluster.shutdown()
""")

# search.py's or evaluate.py's main with a stand-in for rl.train.train that reports like it
# (an evaluation every eval_freq steps, through on_checkpoint) and writes a run folder; it
# imports rl on the worker, where only the runtime environment can have put it. Each call
# is logged (start and end, with the node it ran on) to a file this machine's nodes share;
# no run goes on before runs have started on both nodes.
DRIVER = textwrap.dedent("""
    import json, os, sys, time, types
    sys.path.insert(0, {repo!r})
    LOG = {log!r}

    def train_logged(config, run_dir=None, *, threads=None, seed=None, on_checkpoint=None, **_):
        import ray
        import rl.config  # shipped to the worker as py_modules (the node's Python has no rl)
        assert "runtime_resources" in rl.config.__file__, rl.config.__file__
        key = f"{{config.agent}}-{{config.genome.id}}-s{{config.seed}}"
        node = ray.get_runtime_context().get_node_id()
        with open(LOG, "a") as f:
            f.write(json.dumps({{"event": "start", "key": key, "node": node}}) + "\\n")
        # until a run has started on the other node too (at most 30 s): a node whose trial
        # actor is still starting would otherwise see the other node's reused actor take
        # every run (seen once in CI)
        deadline = time.time() + 30
        while time.time() < deadline and len({{json.loads(l)["node"] for l in open(LOG)}}) < 2:
            time.sleep(0.2)
        every = config.eval_every_agent_steps * config.action_repeat
        quality = int(config.genome.id[:4], 16) % 20 + seed % 3
        curve = []
        for step in range(0, config.num_train_steps + 1, every):
            time.sleep(0.4)
            curve.append((step, quality * step / config.num_train_steps))
            if on_checkpoint is not None:
                on_checkpoint(tuple(curve))
        if run_dir is not None:
            os.makedirs(run_dir)
            for name in ("eval.csv", "train.csv"):
                with open(os.path.join(run_dir, name), "w") as f:
                    f.write("env_step,episode_return\\n" + "".join(f"{{s}},{{r}}\\n" for s, r in curve))
        with open(LOG, "a") as f:
            f.write(json.dumps({{"event": "end", "key": key, "node": node}}) + "\\n")
        returns = [r for _, r in curve]
        return types.SimpleNamespace(curve=tuple(curve), approx_aulc=sum(returns) / len(returns),
                                     final_return=returns[-1], wall_s=1.0, train_s=1.0,
                                     failed=None, env_steps=config.num_train_steps)

    def probe(config, members=1):
        from rl.probe import StepTimes
        return StepTimes(setup_s=2.0, env_s=0.0, act_s=0.0, update_s=0.0, episode_steps=0)

    module = __import__(sys.argv[1], fromlist=["main"])
    raise SystemExit(module.main(sys.argv[2:], train_fn=train_logged, probe_fn=probe))
""")


def node_python(tmp_path: Path) -> Path:
    """A virtualenv whose only .pth lists the suite environment's site-packages: it has
    ray, torch and dm_control, but not this project's editable install (a .pth inside a
    directory added by a .pth is not read), so `import rl` fails there."""
    env = tmp_path / "nodeenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    (site_dir,) = (env / "lib").glob("python*/site-packages")
    (site_dir / "suite.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return env / "bin" / "python"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "PYTHONPATH")) and k != "PYTEST_CURRENT_TEST"}
    return {**env, **extra}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    python = node_python(tmp)
    no_rl = subprocess.run([str(python), "-c", "import rl"], cwd=tmp, capture_output=True,
                           text=True, env=clean_env())
    assert no_rl.returncode != 0 and "No module named 'rl'" in no_rl.stderr
    token = tmp / "token"
    token.write_text("a2ls-test-" + os.urandom(16).hex())
    control = tmp / "control"
    control.mkdir()
    (tmp / "cluster.py").write_text(CLUSTER)
    env = clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    proc = subprocess.Popen([str(python), str(tmp / "cluster.py"), str(control)], cwd=tmp,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        yield {**info, "tmp": tmp, "token": token, "control": control, "proc": proc}
    finally:
        (control / "stop").touch()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def driver(cluster: dict, module: str, args: list[str], log: Path, **env: str) -> subprocess.Popen:
    script = cluster["tmp"] / "driver.py"
    script.write_text(DRIVER.format(repo=str(ROOT), log=str(log)))
    return subprocess.Popen([sys.executable, str(script), module, *args], cwd=cluster["tmp"],
                            env=clean_env(RAY_AUTH_TOKEN_PATH=str(cluster["token"]), **env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_evaluate_joins_the_cluster_and_runs_on_both_nodes(cluster):
    run, log = cluster["tmp"] / "eval", cluster["tmp"] / "eval-calls.jsonl"
    args = ["--loss", "a2-winner", "--baselines", "sac", "--seeds", "2", "--domain_name",
            "cartpole_swingup", "--encoder_type", "ofe", "--num_train_steps", "1600",
            "--eval_freq", "800", "--address", cluster["address"], "--run", str(run)]
    proc = driver(cluster, "search.commands.evaluate_cli", args, log)
    out, _ = proc.communicate(timeout=420)
    assert proc.returncode == 0, out[-3000:]
    assert f"ray: joined cluster at {cluster['address']} (2 nodes, 2 CPUs" in out
    records = [json.loads(p.read_text()) for p in (run / "records").glob("*.json")]
    assert len(records) == 4 and {r["status"] for r in records} == {"done"}
    nodes = {r["worker"].rsplit(":", 1)[0] for r in records}
    assert nodes == {cluster["head"], cluster["worker"]}
    # the run files were written by the driver from what the workers shipped back
    for r in records:
        assert (run / "runs" / r["key"] / "eval.csv").is_file()
        assert (run / "runs" / r["key"] / "train.csv").is_file()
    assert (run / "summary.md").is_file()


def test_search_joins_runs_on_both_nodes_and_survives_losing_one(cluster):
    run, log = cluster["tmp"] / "search", cluster["tmp"] / "search-calls.jsonl"
    proc = driver(cluster, "search.commands.search_cli",
                  ["--preset", "smoke", "--budget", "8", "--population", "4", "--verdict_top", "0",
                   "--address", cluster["address"], "--run", str(run)], log)
    try:
        # Kill the worker node once it has finished a trial and is running another.
        deadline = time.time() + 300
        while time.time() < deadline:
            on_worker = [e for e in events(log) if e["node"] == cluster["worker"]]
            ended = {e["key"] for e in on_worker if e["event"] == "end"}
            running = [e["key"] for e in on_worker if e["event"] == "start" and e["key"] not in ended]
            if ended and running:
                break
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            time.sleep(0.2)
        else:
            pytest.fail("no moment with the worker node done with a trial and running another")
        state = json.loads((run / "engine.json").read_text())
        recorded_before = {f"auxi_sac-{Genome.parse(r['candidate']['genome']).id}-s{seed}"
                           for r in state["records"] for seed, _ in r["results"]}
        (cluster["control"] / "kill-worker").touch()
        out, _ = proc.communicate(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert "retrying" in out  # the lost trial, on the remaining node
    with open(run / "population.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] in ("trained", "stopped", "failed")]
    assert len(rows) == 8 and {r["status"] for r in rows} <= {"trained", "stopped"}
    assert len({r["id"] for r in rows}) == 8                           # none recorded twice
    nodes = {w.rsplit(":", 1)[0] for r in rows for w in r["worker"].split(";")}
    assert nodes == {cluster["head"], cluster["worker"]}
    starts = [e["key"] for e in events(log) if e["event"] == "start"]
    lost = set(running)
    for key in {k for k in starts if starts.count(k) > 1}:
        assert key in lost                                             # only the lost ones ran again
    assert all(starts.count(k) == 1 for k in recorded_before)          # nothing recorded was rerun
    assert any(starts.count(k) == 2 for k in lost)


def test_a_driver_without_the_clusters_token_gets_one_line(cluster, tmp_path):
    home = tmp_path / "home"  # no ~/.ray/auth_token here
    home.mkdir()
    env = clean_env(HOME=str(home), RAY_NUM_REDIS_GET_RETRIES="2")
    out = subprocess.run([sys.executable, str(ROOT / "search.py"), "--preset", "smoke",
                          "--address", cluster["address"], "--run", str(tmp_path / "r")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stdout + out.stderr
    assert lines[0] == (f"search.py: error: --address: cannot join the Ray cluster at "
                        f"{cluster['address']}: the cluster refused a driver without its token; "
                        f"no Ray auth token was found here (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
                        f"or ~/.ray/auth_token)")
    assert not (tmp_path / "r").exists()
    wrong = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--loss", "a2-winner",
                            "--domain_name", "cartpole_swingup", "--address", cluster["address"],
                            "--run", str(tmp_path / "e")], cwd=tmp_path, capture_output=True,
                           text=True, timeout=180,
                           env={**env, "RAY_AUTH_TOKEN": "a2ls-test-not-the-clusters-token"})
    lines = wrong.stderr.strip().splitlines()
    assert wrong.returncode == 2 and len(lines) == 1, wrong.stdout + wrong.stderr
    assert lines[0].endswith("the cluster refused the token from RAY_AUTH_TOKEN (not the "
                             "cluster's own)")
    assert not (tmp_path / "e").exists()
