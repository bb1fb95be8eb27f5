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

# A committed slice of real EMNIST (3,000 train, 1,000 test images): every machine, and a
# clean clone in CI, tests against the same handwriting without the full data set.
DATA_DIR = ROOT / "tests" / "data" / "emnist47-slice"


@pytest.fixture(scope="session")
def emnist_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def emnist_test_sample(emnist_dir):
    """A small slice of the real emnist47 test split (upright tiles, labels, classes)."""
    from training.data import load_split

    return load_split(emnist_dir, "test", limit=600)
