"""Tokens read together: what worker/context.py buys and costs (python -m bench.context).

Reads the emnist47 test split (`--split train` to choose priors without looking at it) through
the archive as served, then composes tokens of 2-8 of its characters, 3,000 of each kind:
- numbers: digits only;
- letters: letters only, every letter class equally often;
- English-like: letters as often as in English text (e 12.7%, t 9.1%, ... z 0.07%), each
  read as EMNIST labels it (a lowercase a as "a", a lowercase o as "O");
- codes: runs of 1-4 letters and 1-4 digits in turn (AB12, SW1A);
- alternating: a letter and a digit in turn (K1A0B1);
- anything: any of the 47 classes, equally often (a string with no structure);
- as in EMNIST: any test character, so as often as in the data (48% digits): what
  `bench.words` composes its words of.
Each token is read twice from the same probabilities: each character alone (the model's
argmax) and together (`worker.context.read_lines`, the code the worker runs). Prints
character accuracy and whole-token accuracy of both, and writes
bench/results/context-<date>.json. `--number-prior` / `--word-prior` try other priors.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.fields import write_figures
from training import data as emnist
from training.evaluate import ArchivedModel
from worker import charsets, context

ROOT = Path(__file__).resolve().parent.parent
ENGLISH = dict(e=12.7, t=9.1, a=8.2, o=7.5, i=7.0, n=6.7, s=6.3, h=6.1, r=6.0, d=4.3, l=4.0, c=2.8, u=2.8,
               m=2.4, w=2.4, f=2.2, g=2.0, y=2.0, p=1.9, b=1.5, v=1.0, k=0.8, j=0.15, x=0.15, q=0.1, z=0.07)
KINDS = ("numbers", "letters", "English-like", "codes", "alternating", "anything", "as in EMNIST")


def label_of(char: str) -> int:
    """A written character's EMNIST class (lowercase letters EMNIST merges read as capitals)."""
    return charsets.CLASSES.index(char if char in charsets.CLASSES else char.upper())


def token_labels(kind: str, rng: np.random.Generator, labels: np.ndarray) -> list[int]:
    """A token's classes (`labels`: the split's, for the kind that draws from them)."""
    n = int(rng.integers(2, 9))
    digit, letter = (lambda: int(rng.integers(0, 10))), (lambda: int(rng.integers(10, 47)))
    if kind == "numbers":
        return [digit() for _ in range(n)]
    if kind == "letters":
        return [letter() for _ in range(n)]
    if kind == "English-like":
        weights = np.array(list(ENGLISH.values()))
        return [label_of(c) for c in rng.choice(list(ENGLISH), n, p=weights / weights.sum())]
    if kind == "codes":
        labels, digits = [], bool(rng.integers(2))
        while len(labels) < n:
            labels += [digit() if digits else letter() for _ in range(int(rng.integers(1, 5)))]
            digits = not digits
        return labels[:n]
    if kind == "alternating":
        first = int(rng.integers(2))
        return [digit() if (first + k) % 2 else letter() for k in range(n)]
    if kind == "anything":
        return [int(rng.integers(0, 47)) for _ in range(n)]
    return [int(label) for label in rng.choice(labels, n)]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", type=Path, default=ROOT / "serve" / "model-store" / "emnist.mar")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "emnist47")
    p.add_argument("--n", type=int, default=3000, help="tokens of each kind")
    p.add_argument("--number-prior", type=float, default=context.NUMBER_PRIOR)
    p.add_argument("--word-prior", type=float, default=context.WORD_PRIOR)
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="characters from this split (train: for choosing settings without looking at the test)")
    p.add_argument("--limit", type=int, default=None, help="read only the split's first N characters")
    args = p.parse_args(argv)
    context.NUMBER_PRIOR, context.WORD_PRIOR = args.number_prior, args.word_prior

    split = emnist.load_split(args.data, args.split, limit=args.limit)
    model = ArchivedModel(args.archive)
    probs = model.classify_images(list(split.images))
    classes = list(split.classes)
    by_class = [np.nonzero(split.labels == c)[0] for c in range(len(classes))]
    rng = np.random.default_rng(0)
    figures = {"archive": str(args.archive), "split": args.split, "number_prior": args.number_prior,
               "word_prior": args.word_prior, "tokens_per_kind": args.n, "kinds": {}}
    for kind in KINDS:
        alone = together = chars = tokens_alone = tokens_together = 0
        for _ in range(args.n):
            labels = token_labels(kind, rng, split.labels)
            rows = probs[[rng.choice(by_class[label]) for label in labels]]
            read, _ = context.read_lines(rows, [[list(range(len(rows)))]])
            truth = [classes[label] for label in labels]
            first = [classes[i] for i in rows.argmax(1)]
            second = [classes[i] for i in read.argmax(1)]
            alone += sum(a == t for a, t in zip(first, truth))
            together += sum(a == t for a, t in zip(second, truth))
            tokens_alone += first == truth
            tokens_together += second == truth
            chars += len(truth)
        row = {"characters": chars,
               "alone": {"char_accuracy": round(alone / chars, 4), "token_accuracy": round(tokens_alone / args.n, 4)},
               "together": {"char_accuracy": round(together / chars, 4),
                            "token_accuracy": round(tokens_together / args.n, 4)}}
        figures["kinds"][kind] = row
        print(f"{kind:13s} characters alone {row['alone']['char_accuracy']:.2%} (tokens "
              f"{row['alone']['token_accuracy']:.2%})  together {row['together']['char_accuracy']:.2%} (tokens "
              f"{row['together']['token_accuracy']:.2%})")
    write_figures("context", figures)
    return figures


if __name__ == "__main__":
    main()
