"""Data-parallel training (torchrun, gloo on CPU): the loss curve does not depend on the number
of processes beyond floating-point reduction order."""

import csv
import os
import subprocess
import sys

import pytest
import torch.distributed as dist
import yaml

from conftest import TINY


def _losses(folder):
    with open(folder / "batch_losses.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available in this build")
def test_two_processes_match_one(tmp_path):
    params = tmp_path / "tiny.yaml"
    params.write_text(yaml.safe_dump(dict(TINY, num_epochs=1, train_sequences=48)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    train = ["-m", "nowcast.cli", "train", "-c", str(params), "--results", str(tmp_path / "r"), "-q"]
    one = subprocess.run([*base, "--nproc_per_node", "1", *train, "--job-id", "one"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([*base, "--nproc_per_node", "2", *train, "--job-id", "two"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = _losses(tmp_path / "r" / "one"), _losses(tmp_path / "r" / "two")
    assert len(a) == len(b) == 6
    assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
    env_two = yaml.safe_load((tmp_path / "r" / "two" / "env.json").read_text())
    assert env_two["processes"] == 2
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["one", "two"]  # rank 1 wrote nothing
