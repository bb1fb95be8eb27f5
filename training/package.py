"""Package trained weights into a TorchServe model archive (.mar).

`python -m training.package --run runs/default` writes serve/model-store/emnist.mar holding
the handler, the one preprocessing (serve/preprocess.py and the modules it imports), the model
file, the weights, the label mapping, serve/model-config.yaml (batch size, max batch
delay, workers, precision) and the run's calibration tiles (class-balanced training tiles
that set the int8 model's scales). The run's report is copied beside the archive, so the
committed model carries its own measurements.

`python -m training.package --repack serve/model-store/emnist.mar` packs an archive's
weights, labels, calibration tiles and report again with this repository's code: after a
change to the handler, the preprocessing or the config, without training again (`--data
DIR` makes the calibration tiles anew from DIR's training split).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from serve.handler import CALIBRATION_FILE
from serve.preprocess import MODULES, normalize_tiles
from training.data import DEFAULT_CLASSES, load_split, read_mapping

ROOT = Path(__file__).resolve().parent.parent
REPORT_FILES = ("report.json", "confusion.png", "curves.png")
# 32 per class (1,504 tiles, 0.4 MB packed); 2,068 or 4,096 tiles agreed with fp32 no more often.
CALIBRATION_PER_CLASS = 32


def calibration_indices(labels: np.ndarray, per_class: int = CALIBRATION_PER_CLASS, seed: int = 0) -> np.ndarray:
    """Up to `per_class` images of every class, in a fixed random choice (sorted indices):
    the images whose activation ranges set the int8 model's scales (serve/handler.py,
    `quantize_int8`)."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == k), min(per_class, int(np.sum(labels == k))), replace=False)
             for k in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def calibration_tiles(tiles: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The calibration choice of `tiles`, what the handler's preprocessing made of training images."""
    return np.ascontiguousarray(tiles[calibration_indices(labels)], dtype=np.uint8)


def calibration_from_data(data_dir: Path) -> np.ndarray:
    train = load_split(data_dir, "train")
    return normalize_tiles(train.images[calibration_indices(train.labels)])


def package(run: Path, export: Path, name: str = "emnist", version: str = "1.0",
            data: Path | None = None, config: Path = ROOT / "serve" / "model-config.yaml") -> Path:
    run, export = Path(run), Path(export)
    report = json.loads((run / "report.json").read_text()) if (run / "report.json").exists() else {}
    architecture = report.get("model", "default")
    classes = read_mapping(Path(data)) if data else list(DEFAULT_CLASSES)
    export.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "index_to_name.json").write_text(json.dumps({str(i): c for i, c in enumerate(classes)}))
        (tmp / "model_meta.json").write_text(json.dumps(
            {"architecture": architecture, "weights": "model.pt", "version": version,
             "test_accuracy": report.get("accuracy"), "test_balanced_accuracy": report.get("balanced_accuracy")}))
        extra = [*(ROOT / "serve" / f"{module}.py" for module in MODULES), tmp / "index_to_name.json",
                 tmp / "model_meta.json"]
        if (run / CALIBRATION_FILE).exists():
            extra.append(run / CALIBRATION_FILE)
        else:
            print(f"warning: {run} holds no {CALIBRATION_FILE}: the archive will serve fp32 only")
        subprocess.run([
            str(Path(sys.executable).with_name("torch-model-archiver")),
            "--model-name", name, "--version", version,
            "--model-file", str(ROOT / "training" / "models.py"),
            "--serialized-file", str(run / "model.pt"),
            "--handler", str(ROOT / "serve" / "handler.py"),
            "--extra-files", ",".join(str(p) for p in extra),
            "--config-file", str(config),
            "--export-path", str(export), "--force",
        ], check=True)
    report_dir = export / f"{name}-report"
    report_dir.mkdir(exist_ok=True)
    for filename in REPORT_FILES:
        if (run / filename).exists():
            shutil.copy(run / filename, report_dir / filename)
    archive = export / f"{name}.mar"
    print(f"wrote {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
    return archive


def repack(archive: Path, name: str = "emnist", data: Path | None = None) -> Path:
    archive = Path(archive)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(archive) as mar:
        run = Path(tmp)
        meta = json.loads(mar.read("model_meta.json"))
        (run / "model.pt").write_bytes(mar.read(meta.get("weights", "model.pt")))
        if data is not None:
            np.save(run / CALIBRATION_FILE, calibration_from_data(Path(data)))
        elif CALIBRATION_FILE in mar.namelist():
            (run / CALIBRATION_FILE).write_bytes(mar.read(CALIBRATION_FILE))
        labels = json.loads(mar.read("index_to_name.json"))
        (run / "mapping.txt").write_text("".join(f"{i} {ord(labels[str(i)])}\n" for i in range(len(labels))))
        report_dir = archive.parent / f"{name}-report"
        for filename in REPORT_FILES:
            if (report_dir / filename).exists():
                shutil.copy(report_dir / filename, run / filename)
        if not (run / "report.json").exists():
            (run / "report.json").write_text(json.dumps(
                {"model": meta["architecture"], "accuracy": meta.get("test_accuracy"),
                 "balanced_accuracy": meta.get("test_balanced_accuracy")}))
        return package(run, archive.parent, name, meta.get("version", "1.0"), data=run)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/default", help="training output folder (model.pt, report.json)")
    p.add_argument("--export", default=str(ROOT / "serve" / "model-store"))
    p.add_argument("--name", default="emnist")
    p.add_argument("--version", default="1.0")
    p.add_argument("--data", default=None, help="take the label mapping from this EMNIST folder (with --repack: "
                                                 "the calibration tiles, made anew from its training split)")
    p.add_argument("--repack", default=None, metavar="ARCHIVE",
                   help="pack this archive's weights, labels and report again with the current code (in place)")
    args = p.parse_args(argv)
    if args.repack:
        repack(Path(args.repack), args.name, args.data)
    else:
        package(Path(args.run), Path(args.export), args.name, args.version, args.data)


if __name__ == "__main__":
    main()
