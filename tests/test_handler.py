"""The TorchServe handler, through a real TorchServe with the committed archive."""
from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import orjson
import pytest
from PIL import Image

from training.scans import render_scan
from worker.charsets import CLASSES


def png(array: np.ndarray, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **save)
    return buf.getvalue()


def paper(tile: np.ndarray, size: int = 96) -> np.ndarray:
    """A tile as dark ink on light paper, enlarged: what a scanner or the canvas sends."""
    return np.asarray(Image.fromarray(255 - tile).resize((size, size), Image.BICUBIC))


@pytest.fixture(scope="module")
def confident(emnist_test_sample):
    """Tiles the archive's model gets right with confidence, with their characters."""
    from training.evaluate import evaluate_tiles

    sample = emnist_test_sample
    probs = evaluate_tiles(sample.images[:200])
    top, p = probs.argmax(1), probs.max(1)
    picks = [i for i in range(200) if top[i] == sample.labels[i] and p[i] > 0.9][:8]
    assert len(picks) >= 4, "the committed model is not confident on real EMNIST tiles"
    return [(sample.images[i], sample.classes[sample.labels[i]]) for i in picks]


def predict(ts, content: bytes | None = None, **kwargs) -> httpx.Response:
    return httpx.post(f"{ts.url}/predictions/emnist", content=content, headers={**ts.headers(), **kwargs.pop("headers", {})},
                      timeout=30, **kwargs)


def best(result: dict) -> str:
    return result["predictions"][0]["char"]


def test_token_auth_is_on(torchserve):
    assert httpx.post(f"{torchserve.url}/predictions/emnist", content=b"x", timeout=10).status_code in (400, 401)
    assert httpx.get(f"{torchserve.url}/ping", timeout=10).status_code in (400, 401)


def test_png_and_jpeg_bytes(torchserve, confident):
    for tile, char in confident:
        for body in (png(paper(tile)), png(np.stack([paper(tile)] * 3, -1), "JPEG", quality=80)):
            r = predict(torchserve, body, headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 200, r.text
            (result,) = r.json()["results"]
            assert best(result) == char
            assert len(result["predictions"]) == 5


def test_top_k_header(torchserve, confident):
    tile, char = confident[0]
    r = predict(torchserve, png(paper(tile)), headers={"X-Top-K": "3"})
    preds = r.json()["results"][0]["predictions"]
    assert len(preds) == 3 and preds[0]["char"] == char
    assert preds[0]["p"] >= preds[1]["p"] >= preds[2]["p"]


def test_workers_get_every_class_probability_as_npy(torchserve, confident):
    """X-Answer: probabilities (what the workers send): a float32 row per tile, the same
    readings as the JSON answer; a request with an unreadable image gets JSON as before."""
    from worker.torchserve import _probabilities

    tiles = np.stack([t for t, _ in confident])
    buf = io.BytesIO()
    np.save(buf, tiles)
    r = predict(torchserve, buf.getvalue(), headers={"X-Answer": "probabilities"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-npy")
    probs = np.load(io.BytesIO(r.content))
    assert probs.shape == (len(confident), 47) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    as_json = predict(torchserve, buf.getvalue(), headers={"X-Top-K": "47"}).json()["results"]
    assert [CLASSES[i] for i in probs.argmax(axis=1)] == [best(x) for x in as_json] == [c for _, c in confident]
    # An archive that answers JSON of every class reads the same (the worker's fallback).
    assert np.allclose(_probabilities(orjson.dumps({"results": as_json})), probs, atol=1e-6)
    mixed = predict(torchserve, files={"a": ("a.png", png(paper(tiles[0])), "image/png"), "b": ("b.png", b"junk")},
                    headers={"X-Answer": "probabilities"})
    assert mixed.status_code == 200 and [("error" in x) for x in mixed.json()["results"]] == [False, True]


def test_multipart_keeps_order(torchserve, confident):
    files = {f"image{i}": (f"{i}.png", png(paper(t)), "image/png") for i, (t, _) in enumerate(confident[:4])}
    r = httpx.post(f"{torchserve.url}/predictions/emnist", files=files, data={"top_k": "2"},
                   headers=torchserve.headers(), timeout=30)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [best(x) for x in results] == [c for _, c in confident[:4]]
    assert all(len(x["predictions"]) == 2 for x in results)


def test_json_base64_with_per_image_errors(torchserve, confident):
    images = [base64.b64encode(png(paper(t))).decode() for t, _ in confident[:3]]
    images.insert(1, "not base64!!")
    r = httpx.post(f"{torchserve.url}/predictions/emnist", json={"images": images, "top_k": 1},
                   headers=torchserve.headers(), timeout=30)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 4
    assert results[1]["error"]["code"] == "undecodable_image"
    assert [best(results[i]) for i in (0, 2, 3)] == [c for _, c in confident[:3]]


def test_npy_batch(torchserve, confident):
    tiles = np.stack([t for t, _ in confident])
    buf = io.BytesIO()
    np.save(buf, tiles)
    r = predict(torchserve, buf.getvalue())
    assert r.status_code == 200, r.text
    assert [best(x) for x in r.json()["results"]] == [c for _, c in confident]


def test_scan_of_a_character(torchserve, confident):
    rng = np.random.default_rng(3)
    tile, char = confident[0]
    r = predict(torchserve, render_scan(tile, rng, jpeg=True))
    assert best(r.json()["results"][0]) == char


@pytest.mark.parametrize("body,code", [
    (b"\x89PNG\r\n\x1a\nthis is not really a png", "undecodable_image"),
    (b"%PDF-1.4 not an image", "undecodable_image"),
])
def test_undecodable_bytes(torchserve, body, code):
    r = predict(torchserve, body, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200
    assert r.json()["results"][0]["error"]["code"] == code


def test_blank_image_is_reported_not_guessed(torchserve):
    r = predict(torchserve, png(np.full((64, 64), 255, np.uint8)))
    assert r.json()["results"][0]["error"]["code"] == "blank_image"


def test_empty_body(torchserve):
    r = predict(torchserve, b"", headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "empty_body"


def test_pixel_limit_and_zero_size(torchserve):
    # A 20000 x 20000 PNG compresses to a few hundred KB: a decompression bomb.
    bomb = png(np.full((20000, 20000), 255, np.uint8))
    r = predict(torchserve, bomb)
    assert r.json()["results"][0]["error"]["code"] == "image_too_large"
    # A GIF header that claims 0 x 0 pixels.
    zero = b"GIF89a\x00\x00\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00;"
    r = predict(torchserve, zero)
    assert r.json()["results"][0]["error"]["code"] in ("empty_image", "undecodable_image")


def test_too_many_images(torchserve):
    buf = io.BytesIO()
    np.save(buf, np.zeros((5000, 28, 28), np.uint8))
    r = predict(torchserve, buf.getvalue())
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "image_too_large"


def test_bad_top_k_and_bad_json(torchserve, confident):
    r = httpx.post(f"{torchserve.url}/predictions/emnist", json={"images": ["x"], "top_k": 0},
                   headers=torchserve.headers(), timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_top_k"
    r = predict(torchserve, b'{"images": [', headers={"Content-Type": "text/plain"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_worker_survives_and_batching_answers_each_request(torchserve, confident):
    """Concurrent requests are batched server-side; each still gets its own answer."""
    import concurrent.futures

    bodies = [(png(paper(t)), c) for t, c in confident] * 6
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda bc: (best(predict(torchserve, bc[0]).json()["results"][0]), bc[1]), bodies))
    assert all(got == want for got, want in answers)


@pytest.mark.parametrize("architecture", ["default", "baseline"])
def test_inference_optimization_keeps_the_answers(architecture):
    import torch

    from serve.handler import optimize_for_inference
    from training.models import build_model

    torch.manual_seed(0)
    model = build_model(architecture).eval()
    for module in model.modules():  # non-trivial batch-norm statistics, as after training
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    x = torch.rand(16, 1, 28, 28)
    with torch.inference_mode():
        expected = torch.softmax(model(x), dim=1)
        optimized = optimize_for_inference(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in optimized.modules())
        assert torch.allclose(torch.softmax(optimized(x), dim=1), expected, atol=1e-5)


def test_the_committed_archive_holds_the_code_of_this_repository():
    """What TorchServe runs is the handler, preprocessing and model code packed in the
    .mar: they must be the files here, or a change would be tested but never served."""
    import zipfile
    from pathlib import Path

    from serve.preprocess import MODULES

    root = Path(__file__).resolve().parent.parent
    packed_code = [("handler.py", "serve/handler.py"), *((f"{m}.py", f"serve/{m}.py") for m in MODULES),
                   ("models.py", "training/models.py"), ("model-config.yaml", "serve/model-config.yaml")]
    with zipfile.ZipFile(root / "serve" / "model-store" / "emnist.mar") as mar:
        for packed, source in packed_code:
            assert mar.read(packed) == (root / source).read_bytes(), (
                f"{packed} differs from {source}: repack the archive (same weights, current code) with "
                "python -m training.package --repack serve/model-store/emnist.mar")


@pytest.fixture(scope="module")
def unpacked_archive(tmp_path_factory):
    import zipfile
    from pathlib import Path

    folder = tmp_path_factory.mktemp("mar")
    with zipfile.ZipFile(Path(__file__).resolve().parent.parent / "serve" / "model-store" / "emnist.mar") as mar:
        mar.extractall(folder)
    return folder


def test_int8_model_answers_as_fp32_does(unpacked_archive, emnist_test_sample):
    """The archive serves int8 on a CPU: its answers must be fp32's, not merely plausible."""
    import torch

    from serve import preprocess
    from serve.handler import load_model, predict_tiles

    cpu = torch.device("cpu")
    tiles = preprocess.normalize_tiles(emnist_test_sample.images)
    int8, _, meta8 = load_model(unpacked_archive, cpu, precision="int8")
    fp32, _, meta32 = load_model(unpacked_archive, cpu, precision="fp32")
    assert (meta8["precision"], meta32["precision"]) == ("int8", "fp32")
    p8, p32 = predict_tiles(int8, tiles, cpu).numpy(), predict_tiles(fp32, tiles, cpu).numpy()
    agree = np.mean(p8.argmax(1) == p32.argmax(1))
    assert agree >= 0.985, f"int8 gave fp32's best character for only {agree:.1%} of {len(tiles)} test tiles"
    assert np.abs(p8 - p32).max(axis=1).mean() < 0.03, "int8 probabilities stray from fp32's"
    correct8 = np.mean(p8.argmax(1) == emnist_test_sample.labels)
    correct32 = np.mean(p32.argmax(1) == emnist_test_sample.labels)
    assert correct8 >= correct32 - 0.01


def test_int8_falls_back_to_fp32_without_calibration_tiles(unpacked_archive, tmp_path, emnist_test_sample):
    import shutil

    import torch

    from serve import preprocess
    from serve.handler import CALIBRATION_FILE, load_model, predict_tiles

    bare = tmp_path / "bare"
    shutil.copytree(unpacked_archive, bare)
    (bare / CALIBRATION_FILE).unlink()
    model, _, meta = load_model(bare, torch.device("cpu"), precision="int8")
    assert meta["precision"] == "fp32"
    tiles = preprocess.normalize_tiles(emnist_test_sample.images[:100])
    assert np.mean(predict_tiles(model, tiles, torch.device("cpu")).numpy().argmax(1)
                   == emnist_test_sample.labels[:100]) > 0.8
    with pytest.raises(ValueError, match="precision"):
        load_model(bare, torch.device("cpu"), precision="fp16")


@pytest.mark.parametrize("architecture", ["default", "baseline"])
def test_folding_the_input_normalization_keeps_the_function(architecture):
    import torch

    from serve.handler import fold_input_normalization
    from training.models import build_model

    torch.manual_seed(0)
    model = build_model(architecture).eval()
    folded = fold_input_normalization(model)
    assert not any(type(m).__name__ == "Normalize" for m in folded.modules())
    x = torch.rand(8, 1, 28, 28)
    x[:, :, :2] = 0  # tiles have black margins, where the pad's value matters
    with torch.inference_mode():
        assert torch.allclose(folded(x), model(x), atol=1e-4)


@pytest.mark.parametrize("override, vnni, expected", [
    (None, True, "int8"), (None, False, "fp32"), ("", True, "int8"), ("FP32", True, "fp32"), ("int8", False, "int8")])
def test_handler_serves_the_archives_precision_unless_overridden(unpacked_archive, monkeypatch, override, vnni,
                                                                  expected):
    """TorchServe hands `initialize` the archive's model-config.yaml: its `precision`
    (auto: int8 where the CPU has VNNI) holds unless HWR_MODEL_PRECISION says otherwise
    (compose passes it empty by default)."""
    import types

    import yaml

    from serve import handler as handler_module
    from serve.handler import EmnistHandler

    monkeypatch.setattr(handler_module, "_cpu_has_vnni", lambda: vnni)

    if override is None:
        monkeypatch.delenv("HWR_MODEL_PRECISION", raising=False)
    else:
        monkeypatch.setenv("HWR_MODEL_PRECISION", override)
    context = types.SimpleNamespace(
        system_properties={"model_dir": str(unpacked_archive), "gpu_id": None},
        manifest={"model": {"modelFile": "models.py"}},
        model_yaml_config=yaml.safe_load((unpacked_archive / "model-config.yaml").read_text()))
    handler = EmnistHandler()
    handler.initialize(context)
    assert handler.meta["precision"] == expected
