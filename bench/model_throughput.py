"""In-process CPU throughput of each model (training.models.MODELS) beside the original app's baseline.

`python -m bench.model_throughput` times every model, one torch thread, at batch 1 and 64,
interleaved in one run (the machine is shared and noisy: compare the ratio, not the
absolute numbers), three ways: int8, as the handler serves on a CPU (`serve.handler.
quantize_int8`, calibrated on tiles); fp32 as served on a GPU (`optimize_for_inference`:
batch norm folded, channels-last); and as plain eager modules. Every model gets the same
treatment, so each ratio to the baseline compares models, not serving tricks. Writes
bench/results/model-<date>.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from serve.handler import optimize_for_inference, quantize_int8
from training.models import MODELS, build_model

ROOT = Path(__file__).resolve().parent.parent


@torch.inference_mode()
def images_per_second(model: torch.nn.Module, batch: int, seconds: float) -> float:
    x = torch.rand(batch, 1, 28, 28)
    for _ in range(3):
        model(x)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model(x)
        done += batch
    return done / (time.perf_counter() - started)


def calibration_tiles(count: int = 512) -> np.ndarray:
    """Tile-like images for int8's scales (the speed of int8 kernels does not depend on
    them): black with a white blob, as characters are."""
    rng = np.random.default_rng(0)
    tiles = np.zeros((count, 28, 28), np.uint8)
    for tile in tiles:
        y, x = rng.integers(4, 12, size=2)
        tile[y:y + 12, x:x + 12] = rng.integers(0, 256, size=(12, 12))
    return tiles


def cpu_description() -> dict:
    """The CPU's model and the int8 instructions it offers: int8's speed, and so the
    ratios between models, differ from one CPU to the next (0.95x on session 10's machine,
    0.51x on session 11's AMD EPYC for the default against the baseline)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return {"model": model, "int8_flags": sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "amx_tile"})}


def measure(seconds: float, rounds: int) -> dict:
    torch.set_num_threads(1)
    eager = {name: build_model(name).eval() for name in ("baseline", *(n for n in MODELS if n != "baseline"))}
    tiles = calibration_tiles()
    variants = {"int8": {n: quantize_int8(m, tiles) for n, m in eager.items()},
                "fp32": {n: optimize_for_inference(m) for n, m in eager.items()}, "eager": eager}
    samples: dict[str, list[float]] = {f"{v}/{n}@{b}": [] for v in variants for n in eager for b in (1, 64)}
    for _ in range(rounds):  # interleave, so drifts in machine load hit every model alike
        for batch in (1, 64):
            for variant, models in variants.items():
                for name, model in models.items():
                    samples[f"{variant}/{name}@{batch}"].append(images_per_second(model, batch, seconds))
    best = {k: max(v) for k, v in samples.items()}
    return {
        "cpu": cpu_description(),
        "threads": 1,
        "images_per_second": best,
        "parameters": {n: sum(p.numel() for p in m.parameters()) for n, m in eager.items()},
        "ratio_to_baseline": {
            f"{v}/{n}": {f"batch{b}": best[f"{v}/{n}@{b}"] / best[f"{v}/baseline@{b}"] for b in (1, 64)}
            for v in variants for n in eager if n != "baseline"},
        "speedup_over_eager": {
            f"{v}/{n}@{b}": best[f"{v}/{n}@{b}"] / best[f"eager/{n}@{b}"]
            for v in variants if v != "eager" for n in eager for b in (1, 64)},
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    result = measure(args.seconds, args.rounds)
    ips = result["images_per_second"]
    print(f"CPU: {result['cpu'].get('model', '?')} ({', '.join(result['cpu'].get('int8_flags', [])) or 'no VNNI/AMX'})")
    print(f"{'model':20} {'params':>9} {'batch 1 img/s':>14} {'batch 64 img/s':>15}")
    for variant in ("int8", "fp32", "eager"):
        for name in result["parameters"]:
            key = f"{variant}/{name}"
            print(f"{name + ' (' + variant + ')':20} {result['parameters'][name]:9d} {ips[key + '@1']:14.0f} "
                  f"{ips[key + '@64']:15.0f}")
    for key, ratio in result["ratio_to_baseline"].items():
        variant, name = key.split("/")
        print(f"{name} / baseline, {variant}: batch 1 {ratio['batch1']:.2f}x, batch 64 {ratio['batch64']:.2f}x"
              + (" (goal for the default >= 0.5x at 64; as served on a CPU)" if variant == "int8" and name == "default"
                 else ""))
    print("speed-up over eager: " + ", ".join(f"{k} {v:.2f}x" for k, v in result["speedup_over_eager"].items()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"model-{time.strftime('%Y-%m-%d')}.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
