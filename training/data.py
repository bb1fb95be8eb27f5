"""Read EMNIST IDX files from either layout, upright, with their label mapping.

Layouts:
- official: `emnist-balanced-{train,test}-{images-idx3,labels-idx1}-ubyte[.gz]`, as
  torchvision stores them under `<root>/EMNIST/raw/` (also accepted directly in DIR);
- plain: `{train,test}-{images-idx3,labels-idx1}-ubyte[.gz]` plus `mapping.txt`, such as
  `../shared/data/emnist47`.
Both store images transposed; `load_split` returns them upright.
"""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serve.preprocess import emnist_upright

# The 47 classes of EMNIST balanced/bymerge: 0-9, A-Z and the 11 lowercase letters whose
# shapes differ from their capitals.
DEFAULT_CLASSES = list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt")
IDX_IMAGES, IDX_LABELS = 0x0803, 0x0801


class DataNotFoundError(FileNotFoundError):
    pass


@dataclass
class Split:
    images: np.ndarray  # N x 28 x 28 uint8, upright, white ink on black
    labels: np.ndarray  # N int64
    classes: list[str]


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic = struct.unpack(">I", raw[:4])[0]
    if magic not in (IDX_IMAGES, IDX_LABELS):
        raise ValueError(f"{path}: not an IDX file of images or labels (magic {magic:#x})")
    ndim = magic & 0xFF
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {dims} values, found {data.size}")
    return data.reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped when the name ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = IDX_IMAGES if array.ndim == 3 else IDX_LABELS
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _find(data_dir: Path, names: list[str]) -> Path | None:
    for folder in (data_dir, data_dir / "EMNIST" / "raw", data_dir / "raw"):
        for name in names:
            for candidate in (folder / f"{name}.gz", folder / name):
                if candidate.exists():
                    return candidate
    return None


def split_files(data_dir: Path, split: str) -> tuple[Path, Path]:
    """Locate the image and label files of `split` ("train" or "test") in either layout."""
    found = []
    for kind in ("images-idx3", "labels-idx1"):
        names = [f"{split}-{kind}-ubyte", f"emnist-balanced-{split}-{kind}-ubyte"]
        path = _find(data_dir, names)
        if path is None:
            raise DataNotFoundError(
                f"no EMNIST {split} {kind.split('-')[0]} in {data_dir}: expected {names[0]}[.gz] "
                f"(plain layout) or {names[1]}[.gz] (official, also under EMNIST/raw/). "
                "Pass --download to fetch the official files through torchvision.")
        found.append(path)
    return found[0], found[1]


def read_mapping(data_dir: str | Path) -> list[str]:
    """Class index to character, from `mapping.txt` or the official mapping file."""
    path = _find(Path(data_dir), ["mapping.txt", "emnist-balanced-mapping.txt"])
    if path is None:
        return list(DEFAULT_CLASSES)
    pairs = [line.split() for line in path.read_text().splitlines() if line.strip()]
    mapping = {int(label): chr(int(code)) for label, code in pairs}
    return [mapping[i] for i in range(len(mapping))]


def load_split(data_dir: str | Path, split: str, limit: int | None = None) -> Split:
    data_dir = Path(data_dir)
    images_path, labels_path = split_files(data_dir, split)
    images = read_idx(images_path)
    labels = read_idx(labels_path).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{data_dir}: {len(images)} images but {len(labels)} labels")
    if limit:
        images, labels = images[:limit], labels[:limit]
    return Split(emnist_upright(images), labels, read_mapping(data_dir))


def download(root: str | Path) -> Path:
    """Fetch the official EMNIST files through torchvision into `root/EMNIST/raw`."""
    from torchvision.datasets import EMNIST

    root = Path(root)
    try:
        EMNIST(str(root), split="balanced", train=True, download=True)
    except Exception as exc:
        raise DataNotFoundError(
            f"could not download EMNIST through torchvision into {root} ({exc.__class__.__name__}: "
            f"{exc}). Without internet access, point --data at a folder that already holds the "
            "IDX files, such as ../shared/data/emnist47.") from None
    return root
