"""bench.profile: reading py-spy's collapsed stacks into per-function shares."""
from __future__ import annotations

import shutil

from bench import profile
from tests.stack import ROOT, VENV_BIN

RAW = f"""\
process 10:"python -m worker";run (/x/.venv/lib/python3.11/site-packages/celery/worker.py);plan_image ({ROOT}/worker/recognize.py);ink_map ({ROOT}/serve/preprocess.py) 6
process 10:"python -m worker";run (/x/.venv/lib/python3.11/site-packages/celery/worker.py);plan_image ({ROOT}/worker/recognize.py) 2
process 11:"python -m worker";poll (/usr/lib/python3.11/selectors.py) 2
garbage line without a count
"""


def test_frames_lose_the_machines_paths():
    assert profile.short_frame(f"ink_map ({ROOT}/serve/preprocess.py)") == "serve/preprocess.py:ink_map"
    assert profile.short_frame("get (/x/.venv/lib/python3.11/site-packages/redis/client.py)") == "redis/client.py:get"
    assert profile.short_frame("select (/usr/lib/python3.11/selectors.py)") == "selectors.py:select"


def test_shares_count_self_and_total_time_per_function():
    found = profile.shares(profile.read_collapsed(RAW))
    assert found["samples"] == 10
    own = {row["function"]: row["share"] for row in found["self"]}
    under = {row["function"]: row["share"] for row in found["total"]}
    assert own == {"serve/preprocess.py:ink_map": 0.6, "worker/recognize.py:plan_image": 0.2,
                   "selectors.py:poll": 0.2}
    assert under["worker/recognize.py:plan_image"] == 0.8
    assert under["celery/worker.py:run"] == 0.8
    assert not any(f.startswith("process ") for f in under)  # py-spy's process frames are not functions


def test_py_spy_is_installed_with_the_dev_extras():
    assert shutil.which("py-spy", path=str(VENV_BIN)), "py-spy is missing: make test installs the dev extras"
