"""Evaluate the model inside a .mar: `python -m training.evaluate --archive A.mar --data DIR [--json]`.

DIR holds test-images-idx3-ubyte.gz and test-labels-idx1-ubyte.gz (official EMNIST
orientation, or the official emnist-balanced-test-* names). The archive is unpacked and
its own handler, preprocessing module and weights are used, so the figure is the one
TorchServe serves. With --json the last line is
{"accuracy": A, "balanced_accuracy": B, "n": N}.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
import yaml

from serve.preprocess import MODULES
from training import data as emnist

DEFAULT_ARCHIVE = Path(__file__).resolve().parent.parent / "serve" / "model-store" / "emnist.mar"


# The archive's own modules, imported flat from its folder.
ARCHIVED_MODULES = MODULES


class ArchivedModel:
    """The model of a .mar with the archive's own handler code: what TorchServe runs."""

    def __init__(self, archive: Path = DEFAULT_ARCHIVE, device: str = "cpu", precision: str | None = None):
        """`precision` ("fp32", "int8" or "auto"): as the archive's model-config.yaml says when None."""
        self._tmp = tempfile.TemporaryDirectory()
        workdir = Path(self._tmp.name)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(workdir)
        manifest = json.loads((workdir / "MAR-INF" / "MANIFEST.json").read_text())
        sys.path.insert(0, str(workdir))  # the handler imports the archived preprocess (and paper, rules)
        for module in ARCHIVED_MODULES:
            sys.modules.pop(module, None)  # not another archive's, imported earlier
        try:
            spec = importlib.util.spec_from_file_location("hwr_archived_handler", workdir / manifest["model"]["handler"])
            self.handler = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(self.handler)
        finally:
            sys.path.remove(str(workdir))
            for module in ARCHIVED_MODULES:
                sys.modules.pop(module, None)
        self.preprocess = self.handler.preprocess
        self.device = torch.device(device)
        if precision is None:
            config = workdir / manifest["model"].get("configFile", "model-config.yaml")
            options = (yaml.safe_load(config.read_text()) or {}).get("handler", {}) if config.exists() else {}
            precision = options.get("precision", "fp32")
        self.model, self.classes, self.meta = self.handler.load_model(
            workdir, self.device, manifest["model"].get("modelFile", "models.py"), precision)

    def probabilities(self, tiles: np.ndarray) -> np.ndarray:
        """Softmax over classes for already-normalized uint8 tiles N x 28 x 28."""
        return self.handler.predict_tiles(self.model, tiles, self.device).numpy()

    def classify_images(self, images: list[np.ndarray]) -> np.ndarray:
        """Any grayscale character images -> probabilities, through the handler's preprocessing.
        Blank images get a row of zeros."""
        tiles = np.zeros((len(images), 28, 28), np.uint8)
        for i, image in enumerate(images):
            try:
                tiles[i] = self.preprocess.normalize_char(image)
            except self.preprocess.BlankImageError:
                pass
        return self.probabilities(tiles)


def evaluate_tiles(images: np.ndarray, archive: Path = DEFAULT_ARCHIVE) -> np.ndarray:
    """Probabilities for upright EMNIST tiles, preprocessed exactly as the handler does."""
    model = ArchivedModel(archive)
    return model.probabilities(model.preprocess.normalize_tiles(images))


def accuracy_figures(pred: np.ndarray, labels: np.ndarray) -> dict:
    recalls = [float((pred[labels == c] == c).mean()) for c in np.unique(labels)]
    return {"accuracy": float((pred == labels).mean()), "balanced_accuracy": float(np.mean(recalls)),
            "n": int(len(labels))}


def evaluate(archive: Path, data_dir: Path, limit: int | None = None, precision: str | None = None) -> dict:
    test = emnist.load_split(data_dir, "test", limit)
    model = ArchivedModel(archive, precision=precision)
    pred = model.probabilities(model.preprocess.normalize_tiles(test.images)).argmax(1)
    return {**accuracy_figures(pred, test.labels), "precision": model.meta["precision"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archive", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--precision", choices=("fp32", "int8", "auto"), default=None,
                   help="run the model so (default: as the archive serves it on a CPU)")
    p.add_argument("--json", action="store_true", help="end with one JSON line")
    args = p.parse_args(argv)
    result = evaluate(args.archive, args.data, args.limit, args.precision)
    print(f"accuracy {result['accuracy']:.4f}  balanced accuracy {result['balanced_accuracy']:.4f}  n {result['n']}"
          f"  ({result['precision']})")
    if args.json:
        print(json.dumps({k: result[k] for k in ("accuracy", "balanced_accuracy", "n")}))
    return result


if __name__ == "__main__":
    main()
