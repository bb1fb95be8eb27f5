"""Train an EMNIST-47 CNN: `python -m training.train --data ../shared/data/emnist47`.

Net (training/models.py), train, test and main in the spirit of pytorch/examples mnist.
Inputs are the tiles `serve.preprocess` makes of each EMNIST image, so the model learns
exactly what the handler will feed it. A 5% slice of the training set is held out for
validation curves; the test split is only scored once, at the end, for the report.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from serve import preprocess
from serve.handler import CALIBRATION_FILE, optimize_for_inference
from serve.preprocess import normalize_tiles
from training import data as emnist
from training.augment import augment
from training.junk import junk_tiles
from training.models import MODELS, build_model
from training.package import calibration_tiles
from training.pen import pen_tiles
from training.report import write_report


def prepare_tiles(images: np.ndarray, cache: Path | None, make=normalize_tiles) -> torch.Tensor:
    """Run EMNIST tiles through the serving preprocessing once (`make`: as they are, or
    re-drawn with a pen), caching the result. The cache is keyed by the source of the
    preprocessing and of `make`'s module, so a change to either is never masked."""
    if cache is not None:
        sources = {Path(preprocess.__file__), Path(inspect.getfile(make))}
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(sources))).hexdigest()[:12]
        cache = cache.with_name(f"{cache.stem}-{digest}{cache.suffix}")
    if cache is not None and cache.exists():
        tiles = np.load(cache)
        if tiles.shape == images.shape:
            return torch.from_numpy(tiles)
    tiles = make(images)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, tiles)
    return torch.from_numpy(tiles)


def to_float(tiles: torch.Tensor) -> torch.Tensor:
    return tiles.float().div_(255.0).unsqueeze(1)


def sampling_weights(labels: torch.Tensor, balance: float) -> torch.Tensor:
    """Per-example weights ~ count**-balance: 1 samples classes evenly, 0 as they come."""
    counts = torch.bincount(labels).float()
    return counts[labels].pow(-balance)


def sampling_log_prior(labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Log of the class distribution a sampler with these per-example weights draws."""
    share = torch.bincount(labels, weights=weights)
    return (share / share.sum()).log()


def distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft-target loss, scaled by T^2 so its gradients match the hard loss's."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher_probs, reduction="batchmean") * temperature ** 2


@torch.no_grad()
def ensemble_probs(teachers: list[torch.nn.Module], x: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.stack([F.softmax(t(x) / temperature, dim=1) for t in teachers]).mean(0)


def cutmix(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Yun et al.'s CutMix: paste a random box of another image of the batch into each image.
    Returns the mixed batch, which image each box came from, and the share of each image kept."""
    n, _, h, w = x.shape
    share = float(torch.rand(1, generator=generator))  # Beta(1, 1)
    bh, bw = int(h * (1 - share) ** 0.5), int(w * (1 - share) ** 0.5)
    top = int(torch.randint(0, h - bh + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - bw + 1, (1,), generator=generator))
    partner = torch.randperm(n, generator=generator)
    mixed = x.clone()
    mixed[:, :, top:top + bh, left:left + bw] = x[partner, :, top:top + bh, left:left + bw]
    return mixed, partner, 1 - bh * bw / (h * w)


def sharpness_aware_gradients(model: torch.nn.Module, batch_loss, rho: float) -> None:
    """Sharpness-aware minimization (Foret et al. 2021): replace the gradients by those at
    the weights moved `rho` uphill, so the step seeks a flat minimum. Twice the work."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.norm(torch.stack([p.grad.norm() for p in params])) + 1e-12
    moves = []
    with torch.no_grad():
        for p in params:
            move = p.grad * (rho / norm)
            p.add_(move)
            moves.append(move)
    model.zero_grad(set_to_none=True)
    batch_loss().backward()
    with torch.no_grad():
        for p, move in zip(params, moves):
            p.sub_(move)


def train_epoch(model, optimizer, scheduler, tiles, labels, weights, args, generator, ema=None,
                teachers=(), pen=None, junk=None) -> float:
    model.train()
    steps = len(tiles) // args.batch_size
    order = torch.multinomial(weights, steps * args.batch_size, replacement=True, generator=generator)
    # Logit adjustment (Menon et al. 2021): the loss sees logits plus the sampler's log prior,
    # so the raw logits the server uses rank classes as if all were equally likely; that is
    # what balanced accuracy rewards, without repeating rare classes' few images.
    adjust = args.logit_adjust * sampling_log_prior(labels, weights) if args.logit_adjust else 0.0
    total = 0.0
    bar = tqdm(range(steps), desc="train", leave=False, mininterval=2)
    for step in bar:
        idx = order[step * args.batch_size:(step + 1) * args.batch_size]
        batch = tiles[idx]
        if pen is not None:  # some draws read the same character drawn with a pen
            drawn = torch.rand(len(idx), generator=generator) < args.pen
            batch = torch.where(drawn.view(-1, 1, 1), pen[idx], batch)
        n_junk = int(round(args.junk * len(idx))) if junk is not None else 0
        if n_junk:  # outlier exposure: tiles of no one character ride along (training/junk.py)
            batch = torch.cat([batch, junk[torch.randint(len(junk), (n_junk,), generator=generator)]])
        x = to_float(batch)
        if args.augment:
            x = augment(x, generator, args.augment_strength)
        partner = None
        if args.cutmix and float(torch.rand(1, generator=generator)) < args.cutmix:  # characters with characters
            mixed, partner, kept = cutmix(x[:len(idx)], generator)
            x = torch.cat([mixed, x[len(idx):]])
        # The teachers' targets are for the characters: the junk's is every class alike.
        soft_targets = ensemble_probs(teachers, x[:len(idx)], args.distill_temperature) if teachers else None

        def batch_loss() -> torch.Tensor:
            logits = model(x)
            if n_junk:  # the junk's target is every class alike
                logits, junk_logits = logits[:-n_junk], logits[-n_junk:]
                junk_loss = -F.log_softmax(junk_logits, dim=1).mean()
            loss = F.cross_entropy(logits + adjust, labels[idx], label_smoothing=args.label_smoothing)
            if partner is not None:
                loss = kept * loss + (1 - kept) * F.cross_entropy(
                    logits + adjust, labels[idx][partner], label_smoothing=args.label_smoothing)
            if soft_targets is not None:
                soft = distillation_loss(logits, soft_targets, args.distill_temperature)
                loss = (1 - args.distill_weight) * loss + args.distill_weight * soft
            return loss + args.junk_weight * junk_loss if n_junk else loss

        optimizer.zero_grad(set_to_none=True)
        loss = batch_loss()
        loss.backward()
        if args.sam:
            sharpness_aware_gradients(model, batch_loss, args.sam)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        total += loss.item()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return total / max(steps, 1)


def load_teacher(architecture: str, path: str) -> torch.nn.Module:
    teacher = build_model(architecture)
    teacher.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    # Folded and channels-last, as served: teachers run forward only, on every training batch.
    return optimize_for_inference(teacher.eval())


def shipped(model: torch.nn.Module, ema) -> torch.nn.Module:
    """The weights that get evaluated and archived: the moving average when one is kept."""
    return model if ema is None else ema.module


@torch.no_grad()
def predict(model, tiles: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    return torch.cat([model(to_float(tiles[i:i + batch_size])).argmax(1)
                      for i in range(0, len(tiles), batch_size)])


def scores(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    pred, labels = pred.numpy(), labels.numpy()
    recall = [float((pred[labels == c] == c).mean()) if np.any(labels == c) else float("nan")
              for c in range(num_classes)]
    return {"accuracy": float((pred == labels).mean()),
            "balanced_accuracy": float(np.nanmean(recall)),
            "per_class_recall": recall}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/emnist47", help="folder with EMNIST IDX files")
    p.add_argument("--download", action="store_true", help="fetch official EMNIST via torchvision into --data")
    p.add_argument("--model", default="default", choices=sorted(MODELS))
    p.add_argument("--out", default="runs/default", help="weights, checkpoint and report go here")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None, help="peak LR (default 3e-3, baseline 1e-3)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw",
                   help="sgd: Nesterov momentum 0.9 (give a peak --lr such as 0.1)")
    p.add_argument("--label-smoothing", type=float, default=None, help="default 0.1 (baseline 0)")
    p.add_argument("--balance", type=float, default=None,
                   help="class-balanced sampling power, 0..1 (default 1; baseline 0)")
    p.add_argument("--logit-adjust", type=float, default=0.0,
                   help="tau of logit-adjusted loss against the sampler's class prior (0: off)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="keep an exponential moving average of the weights with this decay and ship it (0: off)")
    p.add_argument("--val-fraction", type=float, default=0.05,
                   help="share of train held out for validation curves (0: fit on all of it)")
    p.add_argument("--teacher", action="append", default=[], metavar="MODEL_PT",
                   help="distil from this trained model's weights (model.pt of --teacher-model; repeat for an ensemble)")
    p.add_argument("--distill-weight", type=float, default=0.7, help="share of the soft-target loss")
    p.add_argument("--distill-temperature", type=float, default=2.0)
    p.add_argument("--teacher-model", default="default", choices=sorted(MODELS), help="the teachers' architecture")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    p.add_argument("--augment-strength", type=float, default=0.5,
                   help="scales every augmentation magnitude (0.5: the committed recipe, see README)")
    p.add_argument("--pen", type=float, default=None,
                   help="share of training draws that read the character re-drawn with an even pen, as a "
                        "canvas draws it (training/pen.py; default 0.3, baseline 0)")
    p.add_argument("--cutmix", type=float, default=0.0,
                   help="share of batches mixed with CutMix (Yun et al. 2019; 0: off)")
    p.add_argument("--sam", type=float, default=0.0, metavar="RHO",
                   help="sharpness-aware minimization with this radius (e.g. 0.05; twice the work); 0: off")
    p.add_argument("--junk", type=float, default=None,
                   help="junk tiles (touching letters cut wrong, training/junk.py) added per training draw, "
                        "taught as no class (outlier exposure; default 0.25, baseline 0)")
    p.add_argument("--junk-weight", type=float, default=0.5, help="weight of the junk tiles' loss")
    p.add_argument("--limit", type=int, default=None, help="use only the first N train/test images")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (same --epochs)")
    p.add_argument("--stop-after-epoch", type=int, default=None,
                   help="checkpoint and stop after this epoch, to split a long run over sessions")
    args = p.parse_args(argv)
    if args.model == "baseline":
        # The original app: plain Adam 1e-3, no schedule, no augmentation, no smoothing,
        # classes as they come (unless asked for explicitly).
        args.lr = args.lr or 1e-3
        args.augment = False if args.augment is None else args.augment
        args.label_smoothing = 0.0 if args.label_smoothing is None else args.label_smoothing
        args.balance = 0.0 if args.balance is None else args.balance
        args.pen = 0.0 if args.pen is None else args.pen
        args.junk = 0.0 if args.junk is None else args.junk
    args.lr = args.lr or 3e-3
    args.augment = True if args.augment is None else args.augment
    args.label_smoothing = 0.1 if args.label_smoothing is None else args.label_smoothing
    args.balance = 1.0 if args.balance is None else args.balance
    args.pen = 0.3 if args.pen is None else args.pen
    args.junk = 0.25 if args.junk is None else args.junk
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.download:
        emnist.download(args.data)
    train, test = emnist.load_split(args.data, "train", args.limit), emnist.load_split(args.data, "test", args.limit)
    cache = None if args.limit else Path("runs/cache")
    tiles = prepare_tiles(train.images, cache and cache / "train.npy")
    test_tiles = prepare_tiles(test.images, cache and cache / "test.npy")
    labels, test_labels = torch.from_numpy(train.labels), torch.from_numpy(test.labels)
    pen = prepare_tiles(train.images, cache and cache / "train-pen.npy", pen_tiles) if args.pen else None

    generator = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(tiles), generator=generator)
    n_val = max(int(len(tiles) * args.val_fraction), 1)
    # With --val-fraction 0 one image is still scored, so the curves' format holds, and fitted on.
    val_idx, fit_idx = perm[:n_val], (perm if args.val_fraction == 0 else perm[n_val:])
    fit_tiles, fit_labels = tiles[fit_idx], labels[fit_idx]
    fit_pen = pen[fit_idx] if pen is not None else None
    weights = sampling_weights(fit_labels, args.balance)
    junk = None
    if args.junk:  # from the letters it fits on only: none of validation's or the test's
        fit_images = train.images[fit_idx.numpy()]
        junk = torch.from_numpy(junk_tiles(fit_images, len(fit_images) // 2, args.seed))

    model = build_model(args.model)
    teachers = [load_teacher(args.teacher_model, path) for path in args.teacher]
    ema = (torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema), use_buffers=True)
        if args.ema else None)
    steps_per_epoch = max(len(fit_tiles) // args.batch_size, 1)
    if args.model == "baseline":
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    else:
        optimizer = (torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                                     weight_decay=args.weight_decay) if args.optimizer == "sgd" else
                     torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.2)
    history, start_epoch = [], 0
    checkpoint_path = out / "checkpoint.pt"
    if args.resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"])
        history, start_epoch = state["history"], state["epoch"]
        if state.get("epochs", args.epochs) != args.epochs:
            raise SystemExit(f"{checkpoint_path} belongs to a {state['epochs']}-epoch run (its LR schedule "
                             f"spans them): resume with --epochs {state['epochs']}")
        print(f"resumed from {checkpoint_path} after epoch {start_epoch}")

    for epoch in range(start_epoch, args.epochs):
        started = time.time()
        loss = train_epoch(model, optimizer, scheduler, fit_tiles, fit_labels, weights, args, generator, ema,
                           teachers, fit_pen, junk)
        val = scores(predict(shipped(model, ema), tiles[val_idx]), labels[val_idx], len(train.classes))
        history.append({"epoch": epoch + 1, "train_loss": loss, "val_accuracy": val["accuracy"],
                        "val_balanced_accuracy": val["balanced_accuracy"], "seconds": time.time() - started})
        print(json.dumps(history[-1]), flush=True)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                    "history": history, "epoch": epoch + 1, "epochs": args.epochs,
                    **({"ema": ema.state_dict()} if ema is not None else {})}, checkpoint_path)
        if args.stop_after_epoch and epoch + 1 >= args.stop_after_epoch and epoch + 1 < args.epochs:
            print(f"stopped after epoch {epoch + 1}; continue with --resume")
            return {}

    model = shipped(model, ema)
    torch.save(model.state_dict(), out / "model.pt")
    np.save(out / CALIBRATION_FILE, calibration_tiles(fit_tiles.numpy(), fit_labels.numpy()))
    test_pred = predict(model, test_tiles)
    result = scores(test_pred, test_labels, len(train.classes))
    recipe = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report = write_report(out, model, args.model, train.classes, result, test_pred, test_labels, history, recipe)
    print(f"test accuracy {report['accuracy']:.4f}  balanced accuracy {report['balanced_accuracy']:.4f}  "
          f"n {report['n']}  -> {out}")
    return report


if __name__ == "__main__":
    main()
