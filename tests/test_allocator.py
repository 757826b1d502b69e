"""rl.allocator: with glibc's malloc thresholds raised, a pixel update stops faulting its
big temporaries back in from the OS (the count is the kernel's, not a timing). With one
torch thread glibc's own heuristics already keep them; with two (as on the 2-core
machines) the default faulted ~9k pages an update at batch 16, the tuned one ~0."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rl.allocator import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import resource, sys
import numpy as np, torch
from rl.agent import make_agent
from rl.allocator import keep_freed_memory
from rl.config import TrainConfig, resolve
from rl.replay import ReplayBuffer
torch.set_num_threads(2)
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
rng = np.random.default_rng(0)
replay = ReplayBuffer(300, (3, 100, 100), np.uint8, 6, frame_stack=3, seed=0)
replay.start_episode(rng.integers(0, 256, (9, 100, 100), dtype=np.uint8))
for _ in range(100):
    replay.add(rng.uniform(-1, 1, 6), 0.0, rng.integers(0, 256, (9, 100, 100), dtype=np.uint8), False)
config = resolve(TrainConfig(domain_name="cheetah_run", encoder_type="pixel", batch_size=16,
                             hidden_dim=32, seed=0))
agent = make_agent(config, (9, 100, 100), 6, torch.device("cpu"))
for step in range(4):
    agent.update(replay, step)
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for step in range(4, 10):
    agent.update(replay, step)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


def page_faults_of_six_updates(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt only")
def test_pixel_updates_reuse_freed_memory_instead_of_faulting_it_in():
    default, tuned = page_faults_of_six_updates("default"), page_faults_of_six_updates("tuned")
    assert tuned * 4 < default, (default, tuned)  # measured: ~55k vs ~0-2k faults


def test_keep_freed_memory_can_be_called_again():
    first = keep_freed_memory()
    assert keep_freed_memory() == first
    assert first == sys.platform.startswith("linux")
