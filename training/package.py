"""Package trained weights into a TorchServe model archive (.mar).

`python -m training.package --run runs/default` writes serve/model-store/emnist.mar holding
the handler, the one preprocessing module, the model file, the weights, the label mapping
and serve/model-config.yaml (batch size, max batch delay, workers). The run's report is
copied beside the archive, so the committed model carries its own measurements.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from training.data import DEFAULT_CLASSES, read_mapping

ROOT = Path(__file__).resolve().parent.parent
REPORT_FILES = ("report.json", "confusion.png", "curves.png")


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
        extra = [ROOT / "serve" / "preprocess.py", tmp / "index_to_name.json", tmp / "model_meta.json"]
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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/default", help="training output folder (model.pt, report.json)")
    p.add_argument("--export", default=str(ROOT / "serve" / "model-store"))
    p.add_argument("--name", default="emnist")
    p.add_argument("--version", default="1.0")
    p.add_argument("--data", default=None, help="take the label mapping from this EMNIST folder")
    args = p.parse_args(argv)
    package(Path(args.run), Path(args.export), args.name, args.version, args.data)


if __name__ == "__main__":
    main()
