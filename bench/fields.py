"""Form fields with known characters: what the `chars` option buys (python -m bench.fields).

Reads the emnist47 test split through the archive as served (its handler's preprocessing,
its precision), then scores each kind of field twice on the tiles whose labels it can hold:
reading all 47 classes, and reading only the field's classes (worker.charsets.restrict,
the code the worker runs). Prints accuracy and balanced accuracy (mean per-class recall)
for each and writes bench/results/fields-<date>.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from training import data as emnist
from training.evaluate import ArchivedModel
from worker.charsets import NAMED, restrict

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FIELDS = {**NAMED, "hex digits (0-9, A-F)": "0123456789ABCDEF"}


def scores(truth: np.ndarray, read: np.ndarray, labels: list[int]) -> dict:
    recalls = [float((read[truth == label] == label).mean()) for label in labels]
    return {"accuracy": round(float((read == truth).mean()), 4), "balanced_accuracy": round(float(np.mean(recalls)), 4)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", type=Path, default=ROOT / "serve" / "model-store" / "emnist.mar")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emnist47")
    args = p.parse_args(argv)

    test = emnist.load_split(args.data, "test")
    model = ArchivedModel(args.archive)
    probs = model.classify_images(list(test.images))
    classes = list(test.classes)
    figures = {"archive": str(args.archive), "n": len(test.labels), "fields": {}}
    for name, allowed in FIELDS.items():
        labels = [classes.index(c) for c in allowed]
        mine = np.isin(test.labels, labels)
        truth = test.labels[mine]
        unrestricted = probs[mine].argmax(1)
        restricted = restrict(probs[mine], allowed).argmax(1)
        row = {"chars": allowed, "n": int(mine.sum()), "all_classes": scores(truth, unrestricted, labels),
               "only_these": scores(truth, restricted, labels)}
        figures["fields"][name] = row
        print(f"{name:24s} n={row['n']:5d}  all 47 classes: {row['all_classes']['accuracy']:.2%} "
              f"(balanced {row['all_classes']['balanced_accuracy']:.2%})  only these: "
              f"{row['only_these']['accuracy']:.2%} (balanced {row['only_these']['balanced_accuracy']:.2%})")
    write_figures("fields", figures)
    return figures


def write_figures(kind: str, figures: dict) -> Path:
    """bench/results/<kind>-<date>.json, the figures with the time they were taken."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{kind}-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}, indent=2))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
