"""The recogniser as a frozen, differentiable PyTorch module.

ONNX recognisers (antelopev2's ``glintr100.onnx``, buffalo_l's ``w600k_r50.onnx``)
are converted with onnx2torch.  The first conversion of a file is checked against
onnxruntime on a fixed random batch; the maximum absolute difference is reported
and a conversion that disagrees is refused.  The converted weights are cached as
safetensors, keyed by the SHA-256 of the ONNX file and by everything the
conversion and its check depend on (:func:`conversion_versions`: the cache
format, torch, onnx, onnx2torch and onnxruntime versions), so an upgrade of any
of them converts and verifies again instead of reusing a stale file; the entries
of the same ONNX file made with other versions are then deleted.

Why the cache still needs the ONNX file: onnx2torch's result is a torch.fx graph
of onnx2torch operator modules; safetensors holds tensors only, and rebuilding
that graph without pickle means re-reading the ONNX graph.  A cached load
therefore rebuilds the graph from the ONNX file (no onnxruntime check) and loads
the verified weights from the cache, refusing a cache whose tensor names or
shapes do not match.

arcface_torch ``.pth`` backbones load into our own :mod:`.iresnet` with
``torch.load(weights_only=True)``.

Encoder input: aligned crops [N, 3, S, S] (S = 112), RGB, float in 0..1.
Encoder output: raw embeddings [N, D]; :meth:`ArcFaceEncoder.embed` L2-normalises.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass

import torch
from torch import nn

from ...sia.atomic_file import atomic_write
from ..inference_tensors import normal_tensors
from .errors import FaceStackError

log = logging.getLogger(__name__)

CACHE_FORMAT = "personalvideo-onnx2torch-v2"
VERIFY_BATCH = 4
VERIFY_SEED = 20240607
# A conversion agrees when max|torch - onnxruntime| <= REL_TOL * max(1, max|onnxruntime|).
REL_TOL = 1e-4


@dataclass
class ConversionReport:
    source: str
    sha256: str
    cache_file: str
    from_cache: bool
    max_abs_diff: float  # measured at conversion time (read back from the cache on later loads)
    tolerance: float
    seconds: float

    def __str__(self) -> str:
        how = "loaded from cache" if self.from_cache else "converted and verified against onnxruntime"
        return (f"{os.path.basename(self.source)}: {how} in {self.seconds:.1f}s, max abs diff "
                f"{self.max_abs_diff:.3g} (tolerance {self.tolerance:.3g}), cache {self.cache_file}")


class ArcFaceEncoder(nn.Module):
    """A frozen fp32 recogniser taking RGB crops in 0..1.

    ``input_mean``/``input_std`` map pixel values (0..255) to the network input
    exactly as insightface does for the same file, so embeddings match
    ``FaceAnalysis``' ``face.embedding`` for the same crop.
    """

    def __init__(self, network: nn.Module, input_mean: float = 127.5, input_std: float = 127.5,
                 input_size: int = 112, source: str = ""):
        super().__init__()
        self.network = network
        self.input_mean = float(input_mean)
        self.input_std = float(input_std)
        self.input_size = int(input_size)
        self.source = source
        self.report: ConversionReport | None = None
        freeze_(self)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if crops.ndim != 4 or crops.shape[1] != 3:
            raise FaceStackError(f"recogniser input must be [N, 3, H, W] RGB crops, got {tuple(crops.shape)}")
        if crops.shape[-1] != self.input_size or crops.shape[-2] != self.input_size:
            raise FaceStackError(
                f"recogniser {os.path.basename(self.source) or ''} expects {self.input_size}x{self.input_size} "
                f"aligned crops, got {crops.shape[-2]}x{crops.shape[-1]}"
            )
        x = (crops.float() * 255.0 - self.input_mean) / self.input_std
        return self.network(x)

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self(crops), dim=-1)

    def train(self, mode: bool = True):  # always eval: BN statistics are part of the model
        return super().train(False)


def freeze_(module: nn.Module) -> nn.Module:
    """fp32, eval, and no gradient for any weight (gradients still reach inputs)."""
    module.float()
    for p in module.parameters():
        p.requires_grad_(False)
    nn.Module.train(module, False)
    return module


_hash_memo: dict = {}


def file_sha256(path: str) -> str:
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _hash_memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _hash_memo[key] = h.hexdigest()
    return _hash_memo[key]


def _load_onnx(path: str):
    import onnx

    if not os.path.isfile(path):
        raise FaceStackError(f"recogniser model not found: {path}")
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except Exception as exc:
        raise FaceStackError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: {str(exc).strip()[:200]}). "
            "The file is probably truncated or corrupt (an interrupted download or copy): "
            "delete it and copy the model pack again."
        ) from exc
    return model


def onnx_input_normalisation(model) -> tuple:
    """(mean, std) on 0..255 pixels, by insightface's rule for recognition models.

    Models exported from MXNet normalise inside the graph (a Sub and a Mul among
    the first nodes) and take raw pixels; all others take (x - 127.5) / 127.5.
    """
    names = [node.name for node in model.graph.node[:8]]
    has_sub = any(n.startswith("Sub") or n.startswith("_minus") for n in names)
    has_mul = any(n.startswith("Mul") or n.startswith("_mul") for n in names)
    return (0.0, 1.0) if (has_sub and has_mul) else (127.5, 127.5)


def _input_spec(model) -> tuple:
    """(input name, fixed batch size or None, input size)."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise FaceStackError(
            "not a face recognition model: expected one image input and one embedding output, found "
            f"{len(inputs)} inputs and {len(model.graph.output)} outputs"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or dims[1].dim_value not in (0, 3):
        raise FaceStackError("not a face recognition model: its input is not an [N, 3, H, W] image")
    size = dims[2].dim_value or 112
    batch = dims[0].dim_value or None
    return inputs[0].name, batch, size


def _onnx_to_torch(model) -> nn.Module:
    import onnx2torch

    return onnx2torch.convert(model)


def _verification_batch(size: int, mean: float, std: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(VERIFY_SEED)
    pixels = torch.rand(VERIFY_BATCH, 3, size, size, generator=gen) * 255.0
    return (pixels - mean) / std


def _run_onnxruntime(path: str, input_name: str, batch: torch.Tensor, fixed_batch) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = batch.numpy()
    if fixed_batch == 1:
        outs = [session.run(None, {input_name: x[i:i + 1]})[0] for i in range(x.shape[0])]
        import numpy as np

        return torch.from_numpy(np.concatenate(outs, 0))
    return torch.from_numpy(session.run(None, {input_name: x})[0])


def _run_torch(network: nn.Module, batch: torch.Tensor, fixed_batch) -> torch.Tensor:
    with torch.no_grad():
        if fixed_batch == 1:
            return torch.cat([network(batch[i:i + 1]) for i in range(batch.shape[0])], 0)
        return network(batch)


def _atomic_save(tensors: dict, metadata: dict, target: str) -> None:
    from safetensors.torch import save_file

    atomic_write(target, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def conversion_versions() -> dict:
    """What a converted encoder depends on besides the ONNX file; a change in any of them converts again."""
    import onnx
    import onnx2torch
    import onnxruntime

    return {"format": CACHE_FORMAT, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnx2torch": getattr(onnx2torch, "__version__", None) or _distribution_version("onnx2torch"),
            "onnxruntime": onnxruntime.__version__}


def _distribution_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _dump(versions: dict) -> str:
    return json.dumps(versions, sort_keys=True)


def versions_key(versions: dict) -> str:
    return hashlib.sha256(_dump(versions).encode()).hexdigest()[:12]


def cache_file_for(onnx_path: str, cache_dir: str, versions: dict | None = None) -> str:
    """The cache file of ``onnx_path`` for these library versions (default: the installed ones)."""
    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    key = versions_key(conversion_versions() if versions is None else versions)
    return os.path.join(cache_dir, f"{stem}-{file_sha256(onnx_path)[:16]}-{key}.torch.safetensors")


def _remove_other_versions(cache: str, onnx_path: str) -> None:
    """Delete the cache entries of the same ONNX file made with other library versions (never reused)."""
    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    prefix = f"{stem}-{file_sha256(onnx_path)[:16]}"
    folder = os.path.dirname(cache)
    for name in os.listdir(folder):
        if name.startswith(prefix) and name.endswith(".torch.safetensors") and name != os.path.basename(cache):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass


def _load_cached(path: str, cache: str, model, mean, std, size, sha, versions) -> ArcFaceEncoder | None:
    from safetensors import safe_open

    try:
        with safe_open(cache, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        log.warning("PersonalVideo: ignoring unreadable encoder cache %s (%s); converting again", cache, exc)
        return None
    if meta.get("format") != CACHE_FORMAT or meta.get("sha256") != sha or meta.get("versions") != _dump(versions):
        log.warning("PersonalVideo: encoder cache %s was made for another file or other library versions; "
                    "converting again", cache)
        return None
    network = _onnx_to_torch(model)
    expected = network.state_dict()
    if set(expected) != set(tensors) or any(expected[k].shape != tensors[k].shape for k in expected):
        log.warning("PersonalVideo: encoder cache %s does not fit this onnx2torch graph; converting again", cache)
        return None
    network.load_state_dict(tensors, strict=True)
    encoder = ArcFaceEncoder(network, mean, std, size, source=path)
    encoder.report = ConversionReport(path, sha, cache, True, float(meta.get("max_abs_diff", "nan")),
                                      float(meta.get("tolerance", "nan")), 0.0)
    return encoder


def load_onnx_recognizer(path: str, cache_dir: str | None, *, use_cache: bool = True) -> ArcFaceEncoder:
    """Convert an ONNX recogniser to a frozen :class:`ArcFaceEncoder` (on CPU).

    The first time: onnx2torch conversion, a check against onnxruntime on a fixed
    random batch (refused with :class:`FaceStackError` when the maximum absolute
    difference exceeds the tolerance), then the weights are cached atomically in
    ``cache_dir``.  Later: the graph is rebuilt from the ONNX file and the weights
    come from the cache.  ``encoder.report`` tells which happened and the
    difference measured at conversion.
    """
    start = time.perf_counter()
    model = _load_onnx(path)
    input_name, fixed_batch, size = _input_spec(model)
    mean, std = onnx_input_normalisation(model)
    sha = file_sha256(path)
    versions = conversion_versions()
    cache = cache_file_for(path, cache_dir, versions) if cache_dir else None
    if use_cache and cache and os.path.isfile(cache):
        encoder = _load_cached(path, cache, model, mean, std, size, sha, versions)
        if encoder is not None:
            encoder.report.seconds = time.perf_counter() - start
            log.info("PersonalVideo: %s", encoder.report)
            return encoder

    try:
        network = _onnx_to_torch(model)
    except Exception as exc:
        raise FaceStackError(
            f"onnx2torch could not convert {path} ({type(exc).__name__}: {str(exc)[:200]}). "
            "Use the recogniser of the antelopev2 pack (glintr100.onnx) or an arcface_torch .pth backbone."
        ) from exc
    network.eval()
    batch = _verification_batch(size, mean, std)
    reference = _run_onnxruntime(path, input_name, batch, fixed_batch)
    converted = _run_torch(network, batch, fixed_batch)
    if converted.shape != reference.shape:
        raise FaceStackError(
            f"refusing the conversion of {path}: torch output shape {tuple(converted.shape)} differs from "
            f"onnxruntime's {tuple(reference.shape)}"
        )
    max_abs_diff = float((converted - reference).abs().max())
    tolerance = REL_TOL * max(1.0, float(reference.abs().max()))
    if not max_abs_diff <= tolerance:  # also catches NaN
        raise FaceStackError(
            f"refusing the conversion of {path}: the PyTorch module disagrees with onnxruntime "
            f"(max abs diff {max_abs_diff:.3g} > tolerance {tolerance:.3g} on a fixed random batch). "
            "Report this with your onnx2torch and onnxruntime versions."
        )
    encoder = ArcFaceEncoder(network, mean, std, size, source=path)
    if cache:
        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in network.state_dict().items()}
        metadata = {"format": CACHE_FORMAT, "sha256": sha, "source": os.path.basename(path),
                    "max_abs_diff": repr(max_abs_diff), "tolerance": repr(tolerance),
                    "input_mean": repr(mean), "input_std": repr(std), "input_size": str(size),
                    "versions": _dump(versions)}
        try:
            _atomic_save(state, metadata, cache)
            _remove_other_versions(cache, path)
        except OSError as exc:
            log.warning("PersonalVideo: could not write the encoder cache %s (%s); "
                        "the conversion will run again next time", cache, exc)
            cache = ""
    encoder.report = ConversionReport(path, sha, cache or "", False, max_abs_diff, tolerance,
                                      time.perf_counter() - start)
    log.info("PersonalVideo: %s", encoder.report)
    return encoder


def load_recognizer(path: str, cache_dir: str | None = None) -> ArcFaceEncoder:
    """A frozen encoder from ``.onnx`` (converted, cached) or arcface_torch ``.pth``/``.pt``.

    Built outside inference mode even when called from a ComfyUI node (which runs
    under ``torch.inference_mode()``): inference tensors as weights would make any
    later backward pass through the encoder fail.
    """
    with normal_tensors():
        return _load_recognizer(path, cache_dir)


def _load_recognizer(path: str, cache_dir: str | None) -> ArcFaceEncoder:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".onnx":
        return load_onnx_recognizer(path, cache_dir)
    if ext in (".pth", ".pt"):
        from .iresnet import load_arcface_pth

        return ArcFaceEncoder(load_arcface_pth(path), 127.5, 127.5, 112, source=path)
    raise FaceStackError(f"unsupported recogniser file {path}: expected .onnx or an arcface_torch .pth")
