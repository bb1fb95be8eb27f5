"""TorchServe handler for the EMNIST-47 model.

Each request may carry one or many images, in any of these forms:
- raw image bytes (PNG, JPEG, BMP, TIFF, WebP, GIF first frame);
- multipart/form-data, one image per file field (`top_k` may be a form field);
- JSON `{"images": ["<base64>", ...], "top_k": k}`;
- a pre-normalized batch: an `.npy` uint8 array N x 28 x 28 of upright tiles (what the
  Celery workers send, many characters at once).
`top_k` may also come as an `X-Top-K` header (TorchServe 0.12 does not hand query
parameters to handlers). The answer, per request:
`{"results": [{"predictions": [{"char": c, "p": prob}, ...]} | {"error": {"code", "message"}}]}`,
one entry per image, in input order. With an `X-Answer: probabilities` header (what the
workers send), a request whose images are all readable is answered instead with an `.npy`
float32 array, a row of every class's probability per image (columns in label order).
A request that is wrong as a whole (no body, bad JSON,
too many images) gets a 4xx with `{"error": ...}`. Nothing a client sends can crash the
backend worker: everything is checked before the model runs.

TorchServe's server-side batching hands `handle` several requests; their images run
through the model as one tensor, then the answers are split back per request.
"""
from __future__ import annotations

import base64
import binascii
import importlib.util
import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

try:  # inside a model archive, extra files sit flat beside the handler
    import preprocess
except ImportError:  # imported from the repository
    from serve import preprocess

try:  # the project's environment has orjson; another TorchServe's may not
    import orjson

    def to_json(value) -> bytes:
        return orjson.dumps(value)
except ImportError:
    def to_json(value) -> bytes:
        return json.dumps(value).encode()

NPY_TYPE = "application/x-npy"


def probabilities_npy(probs: torch.Tensor) -> bytes:
    """Rows of class probabilities as an .npy float32 array (the workers' answer)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(probs.numpy(), dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


log = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
OPTION_KEYS = {"top_k"}
INFERENCE_CHUNK = 1024
PRECISIONS = ("fp32", "int8", "auto")
# Training tiles packed in the archive (class-balanced): their activation ranges set int8's scales.
CALIBRATION_FILE = "calibration.npy"
CALIBRATION_BATCH = 256

# torch 2.14 (pinned) marks its int8 path deprecated in favour of torchao, which is not
# installed; the path works and `load_model` falls back to fp32 where it does not.
DEPRECATED_INT8 = (r"torch\.ao\.quantization is deprecated", r"torch\.quantize_per_tensor, torch\.quantize_per_channel",
                   r"Please use quant_min and quant_max")  # reduce_range: 7-bit activations without VNNI
for _message in DEPRECATED_INT8:  # for inference too, which may create quantized tensors
    warnings.filterwarnings("ignore", message=_message)


class RequestError(ValueError):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def pick_device(gpu_id) -> torch.device:
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{int(gpu_id)}")
    return torch.device("cpu")


def load_model(model_dir: str | Path, device: torch.device, model_file: str = "models.py",
               precision: str = "fp32"):
    """Build the archived architecture and load its weights, ready to serve: int8 where
    asked for, on a CPU, with the archive's calibration tiles; fp32 (batch norm folded)
    otherwise. "auto": int8 on a CPU with VNNI, fp32 elsewhere. Returns (model, classes,
    meta); meta["precision"] says which one runs."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        # Without VNNI, int8 keeps 7-bit activations and gains nothing: on an AVX2-only EPYC
        # it ran at 0.79-1.04x fp32's images/s and read 89.33% balanced against fp32's 89.51%.
        precision = "int8" if device.type == "cpu" and _cpu_has_vnni() else "fp32"
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "model_meta.json").read_text())
    spec = importlib.util.spec_from_file_location("hwr_archived_models", model_dir / model_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build_model(meta["architecture"])
    state = torch.load(model_dir / meta.get("weights", "model.pt"), map_location=device, weights_only=True)
    model.load_state_dict(state)
    model = model.to(device).eval()
    served = None
    if precision == "int8" and device.type == "cpu":
        served = _int8_or_none(model, model_dir / CALIBRATION_FILE)
    meta["precision"] = "fp32" if served is None else "int8"
    model = optimize_for_inference(model) if served is None else served
    mapping = json.loads((model_dir / "index_to_name.json").read_text())
    classes = [mapping[str(i)] for i in range(len(mapping))]
    return model, classes, meta


def optimize_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """Fold each batch norm into the layer before it and lay activations out channels-last.

    The same function with fewer operations and cache-friendlier convolutions: 2.4x the
    eager model's images/s at batch 64 on one CPU thread, with probabilities equal to 1e-8
    (bench.model_throughput, tests/test_handler.py). An eval-mode model only.
    """
    from torch.fx.experimental.optimization import fuse

    try:
        model = fuse(model)
    except Exception as exc:  # an architecture torch.fx cannot trace still runs, unfused
        log.warning("batch norm not folded (%s: %s)", exc.__class__.__name__, exc)
    return model.to(memory_format=torch.channels_last)


def _int8_or_none(model: torch.nn.Module, calibration_file: Path) -> torch.nn.Module | None:
    if not calibration_file.exists():
        log.warning("int8 asked for, but the archive holds no %s: serving fp32", calibration_file.name)
        return None
    try:
        calibration = np.load(calibration_file, allow_pickle=False)
        return quantize_int8(model, calibration)
    except Exception as exc:  # a torch without this int8 path (or another CPU) still serves, in fp32
        log.warning("int8 quantization failed (%s: %s): serving fp32", exc.__class__.__name__, exc)
        return None


def _cpu_has_vnni() -> bool:
    """Whether the CPU multiplies int8 into int32 in one instruction (AVX-512 VNNI, AVX-VNNI).
    Without it, x86's int8 kernels can saturate unless activations keep 7 bits."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


@torch.no_grad()
def fold_input_normalization(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the model where `Normalize` ((x - mean) / std) and the convolution after it
    are one convolution on x, padded with `mean` (what a zero pad of normalized input is).
    The same function; in int8 it saves two re-quantizations of every input pixel, which
    kept fp32's answer on 99.6% instead of 99.4% of training tiles."""
    import copy

    model = copy.deepcopy(model)
    for block in model.modules():
        if not (isinstance(block, torch.nn.Sequential) and len(block) >= 2
                and type(block[0]).__name__ == "Normalize" and isinstance(block[1], torch.nn.Conv2d)):
            continue
        norm, conv = block[0], block[1]
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str) or conv.groups != 1:
            continue
        folded = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
                                 conv.dilation, bias=True).train(conv.training)
        folded.weight.copy_(conv.weight / norm.std)
        bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
        folded.bias.copy_(bias - conv.weight.sum(dim=(1, 2, 3)) * norm.mean / norm.std)
        pad_y, pad_x = conv.padding
        block[0] = torch.nn.ConstantPad2d((pad_x, pad_x, pad_y, pad_y), norm.mean)
        block[1] = folded
    return model


@torch.no_grad()
def quantize_int8(model: torch.nn.Module, calibration: np.ndarray) -> torch.nn.Module:
    """Static int8 quantization of an eval-mode model for the CPU (FX graph mode, x86
    backend): each convolution runs fused with its batch norm and ReLU on int8 weights (per
    channel) and activations, whose ranges are measured on `calibration`, uint8 tiles
    N x 28 x 28. On this repository's default model: 3-6x the fp32 images/s at batch 64 (by CPU),
    and the same top-1 answer as fp32 on 99.6% of training tiles (README, "The model")."""
    from torch.ao.quantization import QConfig, MinMaxObserver, default_per_channel_weight_observer
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if "x86" not in torch.backends.quantized.supported_engines:
        raise RuntimeError("this torch has no x86 int8 engine")
    torch.backends.quantized.engine = "x86"
    # Min-max ranges kept the top-1 answer closer to fp32's than the default histogram
    # observer (99.4% against 98.8% of training tiles); 8-bit activations need VNNI.
    activation = MinMaxObserver.with_args(reduce_range=not _cpu_has_vnni())
    qconfig = QConfig(activation=activation, weight=default_per_channel_weight_observer)
    tiles = torch.from_numpy(preprocess.to_model_input(calibration))
    with warnings.catch_warnings():  # whoever reset the module's filters since (pytest does)
        for message in DEPRECATED_INT8:
            warnings.filterwarnings("ignore", message=message)
        observed = prepare_fx(fold_input_normalization(model.cpu().eval()),
                              get_default_qconfig_mapping("x86").set_global(qconfig), (tiles[:1],))
        for start in range(0, len(tiles), CALIBRATION_BATCH):
            observed(tiles[start:start + CALIBRATION_BATCH])
        return convert_fx(observed)


@torch.inference_mode()
def predict_tiles(model: torch.nn.Module, tiles: np.ndarray, device: torch.device) -> torch.Tensor:
    """Softmax probabilities (N x classes, on the CPU) for uint8 tiles N x 28 x 28."""
    out = []
    for start in range(0, len(tiles), INFERENCE_CHUNK):
        x = torch.from_numpy(preprocess.to_model_input(tiles[start:start + INFERENCE_CHUNK])).to(device)
        out.append(torch.softmax(model(x), dim=1).float().cpu())
    return torch.cat(out) if out else torch.zeros((0, 0))


def _as_bytes(value) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return None


def _parse_top_k(value, default: int, maximum: int) -> int:
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, bool):
        raise RequestError(400, "invalid_top_k", "top_k must be an integer")
    try:
        top_k = int(value)
    except (TypeError, ValueError):
        raise RequestError(400, "invalid_top_k", f"top_k must be an integer, got {str(value)[:40]!r}") from None
    if not 1 <= top_k <= maximum:
        raise RequestError(400, "invalid_top_k", f"top_k must be between 1 and {maximum}, got {top_k}")
    return top_k


def _request_header(context, idx: int, name: str):
    for key in (name, name.lower()):
        try:
            value = context.get_request_header(idx, key)
        except (AttributeError, KeyError, IndexError):
            value = None
        if value is not None:
            return value
    return None


class EmnistHandler:
    def __init__(self):
        self.initialized = False

    def initialize(self, context) -> None:
        props = context.system_properties
        self.device = pick_device(props.get("gpu_id"))
        if self.device.type == "cpu":
            # Several backend workers share the cores; one thread each is 10-25x faster
            # than torch's default of one thread per core in every worker.
            torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        model_file = (getattr(context, "manifest", None) or {}).get("model", {}).get("modelFile", "models.py")
        options = (getattr(context, "model_yaml_config", None) or {}).get("handler", {})
        # The archive's choice, unless the deployment overrides it.
        precision = (os.environ.get("HWR_MODEL_PRECISION") or options.get("precision", "fp32")).strip().lower()
        self.model, self.classes, self.meta = load_model(props["model_dir"], self.device, model_file, precision)
        self.max_pixels = int(options.get("max_pixels", preprocess.DEFAULT_MAX_PIXELS))
        self.max_images = int(options.get("max_images_per_request", 1024))
        self.default_top_k = int(options.get("default_top_k", DEFAULT_TOP_K))
        self.initialized = True
        log.info("EMNIST model %s loaded on %s (%s)", self.meta.get("architecture"), self.device,
                 self.meta["precision"])

    # -- parsing -------------------------------------------------------------------------
    def _decode_one(self, data: bytes):
        """One image's bytes -> a tile, or a PreprocessError kept as its answer."""
        try:
            return preprocess.bytes_to_tile(data, self.max_pixels)
        except preprocess.PreprocessError as exc:
            return exc

    def _from_json(self, body) -> tuple[list, object]:
        if not isinstance(body, dict) or "images" not in body:
            raise RequestError(400, "invalid_json", 'JSON must be an object {"images": ["<base64>", ...]}')
        images = body["images"]
        if not isinstance(images, list) or not images:
            raise RequestError(400, "invalid_json", '"images" must be a non-empty list of base64 strings')
        self._check_count(len(images))
        items = []
        for image in images:
            if not isinstance(image, str):
                items.append(preprocess.UndecodableImageError("each image must be a base64 string"))
                continue
            try:
                items.append(self._decode_one(base64.b64decode(image.split(",")[-1], validate=True)))
            except (binascii.Error, ValueError):
                items.append(preprocess.UndecodableImageError("invalid base64"))
        return items, body.get("top_k")

    def _check_count(self, count: int) -> None:
        if count > self.max_images:
            raise RequestError(413, "too_many_images",
                               f"{count} images in one request; the limit is {self.max_images}")

    def parse_request(self, request: dict, header_top_k=None) -> tuple[list, int]:
        """A TorchServe request dict -> (tiles or errors, top_k)."""
        top_k_value = request.get("top_k", header_top_k)
        body = request.get("body", request.get("data"))
        if isinstance(body, (dict, list)):
            items, json_top_k = self._from_json(body)
            top_k_value = json_top_k if json_top_k is not None else top_k_value
        elif body is not None and not isinstance(body, (bytes, bytearray, str)):
            raise RequestError(400, "invalid_body", "unsupported request body")
        elif body is not None:
            raw = body.encode() if isinstance(body, str) else bytes(body)
            if not raw:
                raise RequestError(400, "empty_body", "the request body is empty")
            if raw[:6] == b"\x93NUMPY":
                try:
                    items = list(preprocess.load_npy_tiles(raw, self.max_images))
                except preprocess.ImageTooLargeError as exc:
                    raise RequestError(413, exc.code, str(exc)) from None
                except preprocess.PreprocessError as exc:
                    raise RequestError(400, exc.code, str(exc)) from None
            elif raw.lstrip()[:1] == b"{":
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    raise RequestError(400, "invalid_json", "the body is not valid JSON") from None
                items, json_top_k = self._from_json(parsed)
                top_k_value = json_top_k if json_top_k is not None else top_k_value
            else:
                items = [self._decode_one(raw)]
        else:  # multipart: every file field is one image, in form order
            files = [_as_bytes(v) for k, v in request.items() if k not in OPTION_KEYS]
            files = [f for f in files if f is not None]
            if not files:
                raise RequestError(400, "empty_body", "no image in the request")
            self._check_count(len(files))
            items = [self._decode_one(f) for f in files]
        top_k = self.default_top_k if top_k_value is None else _parse_top_k(
            top_k_value, self.default_top_k, len(self.classes))
        return items, top_k

    # -- TorchServe entry point ------------------------------------------------------------
    def answer(self, probs: torch.Tensor, top_k: int) -> list[dict]:
        values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
        classes = self.classes
        # Two tolist() calls, not two per row: a text line's 64 rows cost 28% less.
        return [{"predictions": [{"char": classes[i], "p": round(p, 6)} for p, i in zip(vs, idx)]}
                for vs, idx in zip(values.tolist(), indices.tolist())]

    def handle(self, data: list, context) -> list:
        parsed, responses = [], [None] * len(data)
        wants_probabilities = set()
        for n, request in enumerate(data):
            try:
                header_top_k = _request_header(context, n, "X-Top-K")
                parsed.append((n, *self.parse_request(request or {}, header_top_k)))
                if _request_header(context, n, "X-Answer") == "probabilities":
                    wants_probabilities.add(n)
            except RequestError as exc:
                context.set_response_status(exc.status, exc.message, idx=n)
                responses[n] = {"error": {"code": exc.code, "message": exc.message}}
        tiles = [item for _, items, _ in parsed for item in items if isinstance(item, np.ndarray)]
        probs = predict_tiles(self.model, np.stack(tiles), self.device) if tiles else None
        cursor = 0
        for n, items, top_k in parsed:
            good = sum(isinstance(item, np.ndarray) for item in items)
            if n in wants_probabilities and good == len(items):
                # What the workers read: no JSON of every class for every tile to build and parse.
                responses[n] = probabilities_npy(probs[cursor:cursor + good] if good else torch.zeros(
                    (0, len(self.classes))))
                cursor += good
                continue
            answers = iter(self.answer(probs[cursor:cursor + good], top_k)) if good else iter(())
            cursor += good
            responses[n] = {"results": [
                next(answers) if isinstance(item, np.ndarray)
                else {"error": {"code": item.code, "message": str(item)}} for item in items]}
        for n, response in enumerate(responses):
            context.set_response_content_type(n, NPY_TYPE if isinstance(response, bytes) else "application/json")
        # orjson: a text line's answers encode in a fifteenth of json.dumps's time.
        return [r if isinstance(r, bytes) else to_json(r) for r in responses]


_service = EmnistHandler()


def handle(data, context):
    """Module-level entry point, as TorchServe calls it."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
