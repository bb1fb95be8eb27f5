"""The training report: metrics JSON, a confusion-matrix PNG and a training-curves PNG."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI and servers have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, pred), 1)
    return matrix


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path) -> None:
    rows = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(12, 11))
    im = ax.imshow(rows, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Test confusion matrix (row-normalized recall)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_curves(history: list[dict], path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h["train_loss"] for h in history], marker="o")
    left.set_title("training loss")
    left.set_xlabel("epoch")
    right.plot(epochs, [h["val_accuracy"] for h in history], marker="o", label="accuracy")
    right.plot(epochs, [h["val_balanced_accuracy"] for h in history], marker="o", label="balanced accuracy")
    right.set_title("validation (5% of train)")
    right.set_xlabel("epoch")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def top_confusions(matrix: np.ndarray, classes: list[str], k: int = 10) -> list[dict]:
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None)[::-1][:k]
    return [{"true": classes[i], "predicted": classes[j], "count": int(off[i, j])}
            for i, j in zip(*np.unravel_index(flat, off.shape)) if off[i, j] > 0]


def write_report(out: Path, model: torch.nn.Module, model_name: str, classes: list[str], result: dict,
                 pred: torch.Tensor, labels: torch.Tensor, history: list[dict], recipe: dict) -> dict:
    pred_np, labels_np = pred.numpy(), labels.numpy()
    matrix = confusion_matrix(pred_np, labels_np, len(classes))
    report = {
        "model": model_name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "n": int(len(labels_np)),
        "accuracy": result["accuracy"],
        "balanced_accuracy": result["balanced_accuracy"],
        "per_class_recall": dict(zip(classes, result["per_class_recall"])),
        "top_confusions": top_confusions(matrix, classes),
        "history": history,
        "recipe": recipe,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_confusion(matrix, classes, out / "confusion.png")
    if history:
        plot_curves(history, out / "curves.png")
    return report
