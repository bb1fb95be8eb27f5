"""training/junk.py: tiles of no one character, for outlier exposure."""
from __future__ import annotations

import json

import numpy as np

from tests.test_training import run_module
from training import junk


def test_a_window_holds_at_least_half_of_two_letters_or_the_whole_group():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        widths = rng.integers(3, 28, size=int(rng.integers(2, 4)))
        spans, x = [], 0
        for w in widths:
            spans.append((x, x + int(w)))
            x += int(w) + int(rng.integers(*junk.GAPS))
        start, stop = junk.window(spans, rng)
        if (start, stop) == (spans[0][0], spans[-1][1]):
            continue
        held = [(min(stop, b) - max(start, a)) / (b - a) for a, b in spans]
        assert sum(share >= junk.MIN_SHARE for share in held) >= 2, (spans, start, stop)


def test_junk_tiles_are_reproducible_tiles_with_ink(emnist_test_sample):
    images = emnist_test_sample.images
    tiles = junk.junk_tiles(images, 40, seed=3)
    assert tiles.shape == (40, 28, 28) and tiles.dtype == np.uint8
    assert (tiles.max(axis=(1, 2)) > 0).all()
    assert np.array_equal(tiles, junk.junk_tiles(images, 40, seed=3))
    assert not np.array_equal(tiles, junk.junk_tiles(images, 40, seed=4))


def test_a_junk_run_reads_junk_less_surely_than_letters(tmp_path, emnist_dir):
    import torch

    from serve.preprocess import normalize_tiles
    from training.data import load_split
    from training.models import build_model

    run = tmp_path / "run"
    run_module("training.train", "--data", str(emnist_dir), "--limit", "3000", "--epochs", "2", "--out", str(run),
               "--threads", "1", "--junk", "0.25")
    assert json.loads((run / "report.json").read_text())["recipe"]["junk"] == 0.25
    model = build_model("default").eval()
    model.load_state_dict(torch.load(run / "model.pt", weights_only=True))
    test = load_split(emnist_dir, "test", 400)

    def surest(tiles: np.ndarray) -> float:
        with torch.no_grad():
            x = torch.from_numpy(tiles).float().div(255).unsqueeze(1)
            return float(torch.softmax(model(x), 1).max(1).values.mean())

    letters, junk_ = surest(normalize_tiles(test.images)), surest(junk.junk_tiles(test.images, 400, seed=1))
    assert junk_ < letters - 0.2, f"junk read at {junk_:.2f} on average, letters at {letters:.2f}"
