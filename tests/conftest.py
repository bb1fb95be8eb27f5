"""Shared fixtures. Each service area keeps its fixtures in tests/fixtures/<area>.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.worker",
    "tests.fixtures.web",
]

DATA_DIR = ROOT.parent / "shared" / "data" / "emnist47"


@pytest.fixture(scope="session")
def emnist_dir() -> Path:
    """The real emnist47 folder; tests that need it are skipped where it is absent."""
    if not (DATA_DIR / "test-images-idx3-ubyte.gz").exists():
        pytest.skip(f"EMNIST data not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def emnist_test_sample(emnist_dir):
    """A small slice of the real emnist47 test split (upright tiles, labels, classes)."""
    from training.data import load_split

    return load_split(emnist_dir, "test", limit=600)
