"""FACEANALYSIS in both directions, on whichever insightface this environment holds (0.7.3 in the pinned
lane, 2.x in the newest one):

- insightface's own ``FaceAnalysis``, made the way PuLID's / InstantID's / IPAdapter FaceID's loaders make it,
  drives our training stack (detection, alignment, the PyTorch encoder, the identity loss);
- ours answers insightface's ``FaceAnalysis`` contract as those packs' nodes read it (``prepare``, ``get`` with
  faces carrying bbox, kps, det_score, embedding and normed_embedding; ``models``, ``det_model``).

The face pack is random-weight with a detector double that keeps SCRFD's exact ONNX contract
(tools/random_face_pack.py), so insightface's real model routing and post-processing run on it.
"""
import os

import numpy as np
import pytest
import torch

from comfyui_personalvideo.training.face import analysis, references
from comfyui_personalvideo.training.face.align import align_faces
from comfyui_personalvideo.training.face.detector import to_bgr_uint8
from comfyui_personalvideo.training.face.errors import FaceStackError
from comfyui_personalvideo.training.face.identity_loss import IdentityLoss
from face_fixtures import (astronaut_pack, export_recognizer, insightface_folders, make_pack,  # noqa: F401
                           photo_bgr, photo_image, photo_kps, tiny_onnx)

ASTRO_KPS = photo_kps("astronaut")


def insightface_version() -> tuple:
    import insightface

    return tuple(int(p) for p in insightface.__version__.split(".")[:2])


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Any attempt of insightface to download a model fails the test."""
    import insightface.utils.storage as storage

    def refuse(url, *args, **kwargs):
        raise AssertionError(f"insightface tried to download {url}")

    monkeypatch.setattr(storage, "download_file", refuse)


def pulid_loader(root, det_size=(640, 640)):
    """What PuLID's / InstantID's / IPAdapter FaceID's loaders do with insightface's own API."""
    from insightface.app import FaceAnalysis

    fa = FaceAnalysis(name="antelopev2", root=str(root), providers=["CPUExecutionProvider"])
    if det_size is None:
        fa.prepare(ctx_id=0)
    else:
        fa.prepare(ctx_id=0, det_size=det_size)
    return fa


@pytest.fixture(scope="module")
def ours(astronaut_pack):
    with insightface_folders(astronaut_pack):
        return analysis.build_face_analysis("antelopev2", "CPU")


def _normed(v) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.as_tensor(np.asarray(v, dtype=np.float32)), dim=-1)


def _insightface_faces(fa, name="astronaut"):
    faces = fa.get(photo_bgr(name))
    assert len(faces) == 1, f"insightface {insightface_version()} found {len(faces)} faces"
    return faces


# ---------------------------------------------------------------- theirs into ours

@pytest.mark.parametrize("det_size", [(640, 640), None], ids=["det_size_640", "det_size_default"])
def test_insightface_own_face_analysis_runs_our_training_stack(astronaut_pack, tmp_path, det_size):
    theirs = pulid_loader(astronaut_pack, det_size)
    stack = analysis.load_face_stack(theirs)
    assert analysis.load_face_stack(theirs) is stack  # built once per object
    assert os.path.basename(stack.recognizer_path) == "glintr100.onnx"

    image = photo_image("astronaut")
    face = stack.detector.detect_largest(to_bgr_uint8(image[0]))
    assert face is not None
    np.testing.assert_allclose(face.kps, ASTRO_KPS, atol=1e-3)
    crop = align_faces(image.movedim(-1, 1), face.kps[None])
    encoder = stack.encoder(cache_dir=str(tmp_path))
    ours_embedding = encoder.embed(crop)[0]

    expected = _normed(_insightface_faces(theirs)[0].normed_embedding)
    assert float(ours_embedding @ expected) > 0.999

    refs = references.embed_references(stack.detector, encoder, image)
    loss_fn = IdentityLoss(stack.detector, encoder, refs.embeddings)
    frames = photo_image("grace_hopper")[:, :512, :512].movedim(-1, 1).contiguous().requires_grad_(True)
    loss_fn(frames).loss.backward()
    assert frames.grad.abs().sum() > 0


def test_their_detection_only_face_analysis_is_a_clear_error(astronaut_pack):
    from insightface.app import FaceAnalysis

    det_only = FaceAnalysis(name="antelopev2", root=str(astronaut_pack), allowed_modules=["detection"],
                            providers=["CPUExecutionProvider"])
    det_only.prepare(ctx_id=0, det_size=(640, 640))
    stack = analysis.load_face_stack(det_only)
    assert stack.detector.detect_largest(photo_bgr("astronaut")) is not None
    with pytest.raises(FaceStackError, match="no recognition model"):
        stack.encoder()
    with pytest.raises(FaceStackError, match="no detection model"):
        analysis.load_face_stack(object())


# ---------------------------------------------------------------- ours into theirs

def test_ours_is_an_insightface_face_analysis_with_detection_and_recognition_only(ours):
    from insightface.app import FaceAnalysis

    assert isinstance(ours, FaceAnalysis)
    assert set(ours.models) == {"detection", "recognition"}
    assert ours.det_model is ours.models["detection"]
    assert ours.models["recognition"].model_file.endswith("glintr100.onnx")


def test_ours_answers_the_face_analysis_get_contract(ours, tmp_path):
    """What PuLID / InstantID / IPAdapter FaceID nodes read from ``get``."""
    ours.prepare(ctx_id=0, det_size=(640, 640))  # what their nodes call before get
    faces = _insightface_faces(ours)
    face = faces[0]
    assert np.asarray(face.bbox).shape == (4,)
    x1, y1, x2, y2 = face.bbox
    assert x1 < ASTRO_KPS[:, 0].min() and x2 > ASTRO_KPS[:, 0].max()
    assert y1 < ASTRO_KPS[:, 1].min() and y2 > ASTRO_KPS[:, 1].max()
    np.testing.assert_allclose(face.kps, ASTRO_KPS, atol=1e-3)
    assert 0.5 <= float(face.det_score) <= 1.0
    assert face.embedding.shape == (512,)
    np.testing.assert_allclose(face.normed_embedding, face.embedding / np.linalg.norm(face.embedding), rtol=1e-6)
    np.testing.assert_allclose(face["kps"], face.kps)  # InstantID reads faces as dicts
    # the largest-face pick of InstantID: sorted by bbox area
    largest = sorted(faces, key=lambda f: (f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]))[-1]
    stack = analysis.load_face_stack(ours)
    mine = references.embed_references(stack.detector, stack.encoder(cache_dir=str(tmp_path)),
                                       photo_image("astronaut")).embeddings[0]
    assert float(mine @ _normed(largest.normed_embedding)) > 0.999


def test_ours_can_be_prepared_again_at_another_detector_size(ours):
    """IPAdapter FaceID retries at smaller sizes; a face that fills the picture needs them."""
    try:
        ours.prepare(ctx_id=0, det_size=(320, 320))
        assert len(ours.get(photo_bgr("astronaut"))) == 1
        assert ours.get(np.zeros((512, 512, 3), np.uint8)) == []  # nothing to find: an empty list
    finally:
        ours.prepare(ctx_id=0, det_size=(640, 640))


# ---------------------------------------------------------------- our loader on each version

def test_nested_folder_and_provider_choice(tmp_path, tiny_onnx):
    make_pack(tmp_path, nested=True, recognizer=tiny_onnx)
    with insightface_folders(tmp_path):
        fa = analysis.build_face_analysis("antelopev2", "CPU")
    nested = str(tmp_path / "models" / "antelopev2" / "antelopev2")
    assert os.path.dirname(fa.models["detection"].model_file) == nested
    for model in fa.models.values():
        assert model.session.get_providers() == ["CPUExecutionProvider"]
    assert len(fa.get(photo_bgr("astronaut"))) == 1


def test_the_pack_folder_may_hold_insightface_other_models(tmp_path, tiny_onnx):
    """A full antelopev2 download has landmark and gender/age models too; ours keeps only what it uses."""
    folder = make_pack(tmp_path, recognizer=tiny_onnx)
    export_recognizer(folder / "zz_extra_recogniser.onnx", "tiny", seed=9)  # sorts after glintr100
    with insightface_folders(tmp_path):
        fa = analysis.build_face_analysis("antelopev2", "CPU")
    assert set(fa.models) == {"detection", "recognition"}
    assert fa.models["recognition"].model_file.endswith("glintr100.onnx")


def test_a_corrupt_extra_file_in_the_folder_is_named(tmp_path, tiny_onnx):
    folder = make_pack(tmp_path, recognizer=tiny_onnx)
    (folder / "genderage.onnx").write_bytes(b"\x08\x07garbage" * 100)
    with insightface_folders(tmp_path), pytest.raises(FaceStackError, match="genderage.onnx.*corrupt"):
        analysis.build_face_analysis("antelopev2", "CPU")


def test_a_recogniser_insightface_cannot_route_is_a_clear_error(tmp_path, tiny_onnx):
    """A 64 px "recogniser": insightface does not take it for a recognition model."""
    import warnings

    folder = make_pack(tmp_path, recognizer=tiny_onnx)
    small = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 4, stride=4), torch.nn.Flatten(), torch.nn.Linear(1024, 512))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(small.eval(), torch.zeros(1, 3, 64, 64), str(folder / "glintr100.onnx"),
                          input_names=["x"], output_names=["e"], opset_version=13, dynamo=False)
    with insightface_folders(tmp_path), pytest.raises(FaceStackError, match="not a face recognition model "
                                                                            "insightface can use"):
        analysis.build_face_analysis("antelopev2", "CPU")


def test_a_detector_that_is_not_scrfd_is_named(tmp_path, tiny_onnx):
    import warnings

    folder = make_pack(tmp_path, recognizer=tiny_onnx)
    pool = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(pool.eval(), torch.zeros(1, 3, 640, 640), str(folder / "scrfd_10g_bnkps.onnx"),
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {2: "H", 3: "W"}},
                          opset_version=13, dynamo=False)
    with insightface_folders(tmp_path), pytest.raises(FaceStackError, match="scrfd_10g_bnkps.onnx is not an "
                                                                            "SCRFD face detector"):
        analysis.build_face_analysis("antelopev2", "CPU")


def test_our_cuda_request_falls_back_with_onnxruntime_reason(astronaut_pack, caplog, monkeypatch):
    """The provider choice goes through insightface's constructor; its fallback is still explained."""
    import logging

    import onnxruntime

    from comfyui_personalvideo.training.face import providers

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: no fallback to observe")
    monkeypatch.setattr(providers, "_noticed", set())
    with insightface_folders(astronaut_pack), caplog.at_level(logging.WARNING):
        fa = analysis.build_face_analysis("antelopev2", "CUDA")
    assert all(m.session.get_providers() == ["CPUExecutionProvider"] for m in fa.models.values())
    notices = [r.getMessage() for r in caplog.records if "CUDAExecutionProvider was requested" in r.getMessage()]
    assert len(notices) == 1 and "not in available provider names" in notices[0]
