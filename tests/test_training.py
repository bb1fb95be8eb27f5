"""Data loading, orientation, the train -> package -> evaluate round trip and the evaluate contract."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from training import data as emnist
from training.data import DEFAULT_CLASSES, DataNotFoundError, load_split, write_idx

ROOT = Path(__file__).resolve().parent.parent


def glyph_f() -> np.ndarray:
    """An upright 'F': a vertical stem on the left, a long bar on top, a short one mid-way."""
    img = np.zeros((28, 28), np.uint8)
    img[4:24, 6:9] = 255
    img[4:7, 6:22] = 255
    img[12:15, 6:17] = 255
    return img


def write_split(folder: Path, split: str, images_upright: np.ndarray, labels: np.ndarray, official: bool,
                gz: bool = True) -> None:
    """Store images the way EMNIST does: transposed."""
    prefix = f"emnist-balanced-{split}" if official else split
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", np.swapaxes(images_upright, 1, 2))
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels.astype(np.uint8))


@pytest.fixture
def glyphs():
    images = np.stack([glyph_f(), np.fliplr(glyph_f()), glyph_f()])
    return images, np.array([15, 3, 15])


def test_plain_layout(tmp_path, glyphs):
    images, labels = glyphs
    write_split(tmp_path, "train", images, labels, official=False)
    (tmp_path / "mapping.txt").write_text("".join(f"{i} {ord(c)}\n" for i, c in enumerate(DEFAULT_CLASSES)))
    split = load_split(tmp_path, "train")
    assert split.images.shape == (3, 28, 28) and split.labels.tolist() == [15, 3, 15]
    assert split.classes[15] == "F" and len(split.classes) == 47


def test_official_layout_under_torchvision_raw(tmp_path, glyphs):
    images, labels = glyphs
    raw = tmp_path / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    write_split(raw, "test", images, labels, official=True, gz=False)  # torchvision un-gzips them
    (raw / "emnist-balanced-mapping.txt").write_text("".join(f"{i} {ord(c)}\n" for i, c in enumerate(DEFAULT_CLASSES)))
    split = load_split(tmp_path, "test")
    assert np.array_equal(split.images, images)
    assert split.classes == DEFAULT_CLASSES


def test_orientation_keeps_glyph_upright(tmp_path, glyphs):
    images, labels = glyphs
    write_split(tmp_path, "train", images, labels, official=False)
    upright = load_split(tmp_path, "train").images[0]
    assert np.array_equal(upright, glyph_f())
    assert upright[4:7].sum() > upright[20:24].sum()      # the top bar is at the top
    assert upright[:, 6:9].sum() > upright[:, 19:22].sum()  # the stem is on the left


def test_real_emnist_f_and_7_are_upright(emnist_dir):
    test = load_split(emnist_dir, "test")
    f = test.images[test.labels == test.classes.index("F")].astype(float).mean(0)
    assert f[:9].sum() > f[-9:].sum(), "F's bars should be at the top"
    assert f[:, :9].sum() > f[:, -9:].sum(), "F's stem should be on the left"
    seven = test.images[test.labels == test.classes.index("7")].astype(float).mean(0)
    assert seven[:7].sum() > seven[-7:].sum(), "7's bar should be at the top"


def test_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(DataNotFoundError, match="--download"):
        load_split(tmp_path, "train")


def test_download_failure_is_clear(tmp_path, monkeypatch):
    from torchvision.datasets import EMNIST

    # The real torchvision download path, pointed at a closed local port: no network needed.
    monkeypatch.setattr(EMNIST, "mirrors", ["http://127.0.0.1:9/"], raising=False)
    monkeypatch.setattr(EMNIST, "url", "http://127.0.0.1:9/gzip.zip", raising=False)
    with pytest.raises(DataNotFoundError, match="could not download EMNIST"):
        emnist.download(tmp_path)


def run_module(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_limit_round_trip_train_package_evaluate(tmp_path, emnist_dir):
    run = tmp_path / "run"
    # An interrupted run (stopped after epoch 2 of 3) continues from its checkpoint.
    out = run_module("training.train", "--data", str(emnist_dir), "--limit", "3000", "--epochs", "3",
                     "--out", str(run), "--threads", "1", "--stop-after-epoch", "2")
    assert "stopped after epoch 2" in out and not (run / "model.pt").exists()
    out = run_module("training.train", "--data", str(emnist_dir), "--limit", "3000", "--epochs", "3",
                     "--out", str(run), "--threads", "1", "--resume")
    assert "resumed from" in out
    report = json.loads((run / "report.json").read_text())
    assert [h["epoch"] for h in report["history"]] == [1, 2, 3]
    for key in ("accuracy", "balanced_accuracy", "per_class_recall"):
        assert key in report
    assert (run / "confusion.png").stat().st_size > 0 and (run / "curves.png").stat().st_size > 0
    assert (run / "calibration.npy").exists(), "int8 needs the run's calibration tiles"
    store = tmp_path / "store"
    run_module("training.package", "--run", str(run), "--export", str(store))
    with zipfile.ZipFile(store / "emnist.mar") as mar:
        assert "calibration.npy" in mar.namelist()
    line = run_module("training.evaluate", "--archive", str(store / "emnist.mar"), "--data", str(emnist_dir),
                      "--limit", "1000", "--json").strip().splitlines()[-1]
    result = json.loads(line)
    assert result["n"] == 1000
    assert 0.3 < result["accuracy"] <= 1.0, "three short epochs on 3,000 images should beat chance by far"


def test_calibration_tiles_are_distinct_images_of_every_class(emnist_dir):
    from serve.preprocess import normalize_tiles
    from training.package import CALIBRATION_PER_CLASS, calibration_from_data, calibration_indices

    train = load_split(emnist_dir, "train")
    chosen = calibration_indices(train.labels)
    assert len(np.unique(chosen)) == len(chosen) and chosen.max() >= 256, "indices, not wrapped to 8 bits"
    counts = np.bincount(train.labels[chosen], minlength=len(train.classes))
    assert np.array_equal(counts, np.minimum(np.bincount(train.labels, minlength=len(train.classes)),
                                             CALIBRATION_PER_CLASS))
    tiles = calibration_from_data(emnist_dir)
    assert np.array_equal(tiles, normalize_tiles(train.images[chosen]))


def test_committed_archive_calibrates_on_distinct_tiles_of_every_class():
    import io

    from training.package import CALIBRATION_PER_CLASS

    with zipfile.ZipFile(ROOT / "serve/model-store/emnist.mar") as mar:
        tiles = np.load(io.BytesIO(mar.read("calibration.npy")), allow_pickle=False)
    assert tiles.shape == (len(DEFAULT_CLASSES) * CALIBRATION_PER_CLASS, 28, 28) and tiles.dtype == np.uint8
    assert len(np.unique(tiles.reshape(len(tiles), -1), axis=0)) == len(tiles)


def test_evaluate_json_contract_on_committed_archive(tmp_path, emnist_test_sample):
    sample = emnist_test_sample
    # The official orientation on disk: transposed, as EMNIST ships it.
    write_idx(tmp_path / "test-images-idx3-ubyte.gz", np.swapaxes(sample.images[:300], 1, 2))
    write_idx(tmp_path / "test-labels-idx1-ubyte.gz", sample.labels[:300].astype(np.uint8))
    lines = run_module("training.evaluate", "--archive", str(ROOT / "serve/model-store/emnist.mar"),
                       "--data", str(tmp_path), "--json").strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result) == {"accuracy", "balanced_accuracy", "n"}
    assert result["n"] == 300
    assert result["accuracy"] > 0.8, "the committed model should read real EMNIST test images"


def test_sampling_log_prior_follows_the_balance_power():
    import torch

    from training.train import sampling_log_prior, sampling_weights

    labels = torch.tensor([0] * 30 + [1] * 10)
    prior = lambda balance: sampling_log_prior(labels, sampling_weights(labels, balance)).exp()  # noqa: E731
    assert torch.allclose(prior(0.0), torch.tensor([0.75, 0.25]))
    assert torch.allclose(prior(1.0), torch.tensor([0.5, 0.5]))


def test_logit_adjusted_ema_run_ships_loadable_weights(tmp_path, emnist_dir):
    import torch

    from training.models import build_model

    run = tmp_path / "run"
    run_module("training.train", "--data", str(emnist_dir), "--limit", "3000", "--epochs", "2", "--out", str(run),
               "--threads", "1", "--balance", "0", "--logit-adjust", "1", "--ema", "0.9", "--val-fraction", "0")
    model = build_model("default")
    model.load_state_dict(torch.load(run / "model.pt", weights_only=True))  # the averaged copy, same keys
    report = json.loads((run / "report.json").read_text())
    assert report["recipe"]["logit_adjust"] == 1 and report["recipe"]["ema"] == 0.9
    assert report["accuracy"] > 0.3, "two short epochs should beat chance (1/47) by far, averaged or not"


def test_repack_keeps_the_weights_and_takes_the_current_code(tmp_path):
    import shutil
    import zipfile

    root = Path(__file__).resolve().parent.parent
    store = tmp_path / "store"
    shutil.copytree(root / "serve" / "model-store", store)
    (store / "emnist-report" / "report.json").write_text('{"model": "default", "accuracy": 0.5}')
    subprocess.run([sys.executable, "-m", "training.package", "--repack", str(store / "emnist.mar")], check=True,
                   cwd=root, capture_output=True)
    with zipfile.ZipFile(root / "serve" / "model-store" / "emnist.mar") as before, \
            zipfile.ZipFile(store / "emnist.mar") as after:
        for name in ("model.pt", "index_to_name.json"):
            assert after.read(name) == before.read(name)
        assert after.read("handler.py") == (root / "serve" / "handler.py").read_bytes()
        assert after.read("preprocess.py") == (root / "serve" / "preprocess.py").read_bytes()
        assert after.read("paper.py") == (root / "serve" / "paper.py").read_bytes()
        assert json.loads(after.read("model_meta.json"))["test_accuracy"] == 0.5  # from the report beside it


def test_distillation_loss_is_least_where_the_student_agrees_with_the_teachers():
    import torch

    from training.train import distillation_loss, ensemble_probs

    torch.manual_seed(0)
    teacher_logits = torch.randn(8, 47) * 3
    teachers = [lambda x: teacher_logits, lambda x: teacher_logits]
    target = ensemble_probs(teachers, torch.zeros(8, 1, 28, 28), temperature=2.0)
    assert torch.allclose(target.sum(1), torch.ones(8))
    agreeing = distillation_loss(teacher_logits, target, 2.0)
    assert abs(agreeing.item()) < 1e-5
    student = torch.zeros(8, 47, requires_grad=True)
    loss = distillation_loss(student, target, 2.0)
    assert loss.item() > 0.1
    loss.backward()
    # A gradient step moves the student's logits towards the teachers' ranking.
    stepped = student.detach() - 10 * student.grad
    assert (stepped.argmax(1) == teacher_logits.argmax(1)).all()


def test_lean_student_distilled_from_a_default_teacher(tmp_path, emnist_dir):
    import torch

    from training.models import build_model

    teacher, student = tmp_path / "teacher", tmp_path / "student"
    common = ("--data", str(emnist_dir), "--limit", "2000", "--epochs", "1", "--threads", "1")
    run_module("training.train", *common, "--out", str(teacher))
    run_module("training.train", *common, "--out", str(student), "--model", "lean",
               "--teacher", str(teacher / "model.pt"), "--distill-weight", "0.5")
    model = build_model("lean")
    model.load_state_dict(torch.load(student / "model.pt", weights_only=True))
    report = json.loads((student / "report.json").read_text())
    assert report["model"] == "lean"
    assert report["recipe"]["teacher"] == [str(teacher / "model.pt")]
    assert report["accuracy"] > 0.1, "one distilled epoch on 2,000 images should beat chance (1/47)"
