"""The differentiable recogniser: ONNX -> PyTorch conversion, cache, .pth backbones."""
import os

import numpy as np
import pytest
import torch

from comfyui_personalvideo.training.face import encoder as enc_mod
from comfyui_personalvideo.training.face import iresnet
from comfyui_personalvideo.training.face.errors import FaceStackError
from face_fixtures import export_recognizer, photo_bgr, photo_kps, tiny_onnx  # noqa: F401


def _ort_embedding(path, crops01):
    """What insightface's ArcFaceONNX computes for RGB crops in 0..1."""
    import onnxruntime
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = ArcFaceONNX(model_file=str(path), session=session)
    return torch.from_numpy(model.forward((crops01 * 255.0).numpy().astype(np.float32)))


def _real_crops():
    from insightface.utils import face_align

    crops = []
    for name in ("astronaut", "grace_hopper"):
        c = face_align.norm_crop(photo_bgr(name), photo_kps(name).astype(np.float32))[..., ::-1]
        crops.append(torch.from_numpy(c.astype(np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(crops)


def test_conversion_matches_onnxruntime_and_is_cached(tiny_onnx, tmp_path):
    crops = _real_crops()
    first = enc_mod.load_onnx_recognizer(tiny_onnx, str(tmp_path))
    assert not first.report.from_cache
    assert 0 <= first.report.max_abs_diff <= first.report.tolerance
    cache = first.report.cache_file
    assert os.path.isfile(cache) and enc_mod.file_sha256(tiny_onnx)[:16] in os.path.basename(cache)
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp")] == []  # atomic write left nothing behind
    expected = _ort_embedding(tiny_onnx, crops)
    with torch.no_grad():
        got = first(crops)
    assert (got - expected).abs().max() <= 1e-4 * max(1.0, float(expected.abs().max()))

    # second load: weights from the cache, no onnxruntime check
    def no_ort(*a, **k):
        raise AssertionError("onnxruntime verification must not run on a cached load")

    orig = enc_mod._run_onnxruntime
    enc_mod._run_onnxruntime = no_ort
    try:
        second = enc_mod.load_onnx_recognizer(tiny_onnx, str(tmp_path))
    finally:
        enc_mod._run_onnxruntime = orig
    assert second.report.from_cache and second.report.max_abs_diff == first.report.max_abs_diff
    with torch.no_grad():
        torch.testing.assert_close(second(crops), got, atol=0, rtol=0)


def test_cache_weights_are_the_ones_used(tiny_onnx, tmp_path):
    """A tampered cache is used as-is (proving weights come from it), a stale one is ignored."""
    from safetensors.torch import load_file, save_file

    first = enc_mod.load_onnx_recognizer(tiny_onnx, str(tmp_path))
    cache = first.report.cache_file
    from safetensors import safe_open

    with safe_open(cache, framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(cache)
    key = next(k for k in tensors if k.endswith("weight") and tensors[k].ndim == 4)
    tensors[key] = tensors[key] * 0.5
    save_file(tensors, cache, metadata=meta)
    crops = _real_crops()
    with torch.no_grad():
        changed = enc_mod.load_onnx_recognizer(tiny_onnx, str(tmp_path))(crops)
        assert (changed - first(crops)).abs().max() > 1e-3
    meta["sha256"] = "0" * 64  # cache made for another file: converted again
    save_file(tensors, cache, metadata=meta)
    again = enc_mod.load_onnx_recognizer(tiny_onnx, str(tmp_path))
    assert not again.report.from_cache


def test_a_changed_onnx_file_gets_its_own_cache_entry(tmp_path):
    a = export_recognizer(tmp_path / "a" / "glintr100.onnx", "tiny", seed=3)
    b = export_recognizer(tmp_path / "b" / "glintr100.onnx", "tiny", seed=4)
    ea = enc_mod.load_onnx_recognizer(a, str(tmp_path / "cache"))
    eb = enc_mod.load_onnx_recognizer(b, str(tmp_path / "cache"))
    assert ea.report.cache_file != eb.report.cache_file and not eb.report.from_cache
    x = _real_crops()
    with torch.no_grad():
        assert (ea(x) - eb(x)).abs().max() > 1e-2


def test_encoder_is_frozen_fp32_and_passes_gradient_to_pixels(tiny_onnx, tmp_path):
    encoder = enc_mod.load_onnx_recognizer(tiny_onnx, str(tmp_path))
    params = list(encoder.parameters())
    assert params and all(not p.requires_grad and p.dtype == torch.float32 for p in params)
    encoder.train()  # stays in eval: BN statistics are part of the model
    assert not any(m.training for m in encoder.modules())
    crops = _real_crops().requires_grad_(True)
    encoder.embed(crops)[:, :8].sum().backward()
    assert crops.grad is not None and crops.grad.abs().sum() > 0
    assert all(p.grad is None for p in params)


def test_disagreeing_conversion_is_refused(tiny_onnx, tmp_path, monkeypatch):
    real = enc_mod._onnx_to_torch

    def broken(model):
        net = real(model)
        with torch.no_grad():
            p = next(p for p in net.parameters() if p.ndim == 4)
            p.mul_(1.05)
        return net

    monkeypatch.setattr(enc_mod, "_onnx_to_torch", broken)
    with pytest.raises(FaceStackError, match="disagrees with onnxruntime"):
        enc_mod.load_onnx_recognizer(tiny_onnx, str(tmp_path))
    assert os.listdir(tmp_path) == []  # nothing cached


def test_corrupt_onnx_file_is_a_clear_error(tiny_onnx, tmp_path):
    bad = tmp_path / "glintr100.onnx"
    bad.write_bytes(open(tiny_onnx, "rb").read()[:5000])  # an interrupted download
    with pytest.raises(FaceStackError, match="glintr100.onnx.*corrupt.*copy the model pack again"):
        enc_mod.load_onnx_recognizer(str(bad), str(tmp_path / "cache"))
    with pytest.raises(FaceStackError, match="not found"):
        enc_mod.load_onnx_recognizer(str(tmp_path / "missing.onnx"), None)


def test_arcface_torch_pth_loads_safely(tmp_path):
    model = iresnet.randomize_(iresnet.build_iresnet("tiny"), seed=5)
    pth = tmp_path / "backbone.pth"
    torch.save(model.state_dict(), pth)
    encoder = enc_mod.load_recognizer(str(pth))
    assert encoder.network.layers_spec == (1, 1, 1, 1) and encoder.network.widths == iresnet.TINY_WIDTHS
    x = _real_crops()
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), model(x * 2 - 1), atol=1e-5, rtol=1e-5)
    # a pickled module (not a plain state dict) is refused, never unpickled
    pickled = tmp_path / "model.pth"
    torch.save(model, pickled)
    with pytest.raises(FaceStackError, match="state dict"):
        enc_mod.load_recognizer(str(pickled))


def test_r100_architecture_round_trip_through_onnx(tmp_path):
    """The ResNet-100 of glintr100, random weights: export, convert like users do, compare."""
    path = export_recognizer(tmp_path / "glintr100.onnx", "r100", seed=2)
    net = iresnet.build_iresnet("r100")
    assert sum(1 for m in net.modules() if isinstance(m, iresnet.IBasicBlock)) == 49
    encoder = enc_mod.load_onnx_recognizer(path, str(tmp_path / "cache"))
    assert encoder.report.max_abs_diff <= encoder.report.tolerance
    crops = _real_crops()
    expected = _ort_embedding(path, crops)
    with torch.no_grad():
        got = encoder(crops)
    assert got.shape == (2, 512)
    assert (got - expected).abs().max() <= 1e-4 * max(1.0, float(expected.abs().max()))
    cos = torch.nn.functional.cosine_similarity(got, expected)
    assert cos.min() > 0.99999


def test_cache_is_keyed_by_the_library_versions(tiny_onnx, tmp_path, monkeypatch, caplog):
    """An upgrade of torch (or onnx, onnx2torch, onnxruntime) converts and verifies again, never reuses a
    stale file; the entry of the old versions is removed."""
    import logging
    import shutil

    installed = enc_mod.conversion_versions()
    import onnx
    import onnxruntime

    assert installed["torch"] == torch.__version__ and installed["onnx"] == onnx.__version__
    assert installed["onnxruntime"] == onnxruntime.__version__ and installed["onnx2torch"] not in (None, "unknown")
    first = enc_mod.load_onnx_recognizer(tiny_onnx, str(tmp_path))
    assert first.report.cache_file == enc_mod.cache_file_for(tiny_onnx, str(tmp_path))

    upgraded = dict(installed, torch="99.0.0")
    monkeypatch.setattr(enc_mod, "conversion_versions", lambda: upgraded)
    after = enc_mod.load_onnx_recognizer(tiny_onnx, str(tmp_path))
    assert not after.report.from_cache and after.report.max_abs_diff <= after.report.tolerance
    assert after.report.cache_file != first.report.cache_file
    assert os.listdir(tmp_path) == [os.path.basename(after.report.cache_file)]  # the stale entry is gone
    assert enc_mod.load_onnx_recognizer(tiny_onnx, str(tmp_path)).report.from_cache

    # a file under the right name but written by other versions (copied between installs) is not trusted
    monkeypatch.setattr(enc_mod, "conversion_versions", lambda: installed)
    shutil.copyfile(after.report.cache_file, first.report.cache_file)
    with caplog.at_level(logging.WARNING):
        again = enc_mod.load_onnx_recognizer(tiny_onnx, str(tmp_path))
    assert not again.report.from_cache
    assert any("other library versions" in r.getMessage() for r in caplog.records)
