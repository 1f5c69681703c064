"""Face-stack test helpers and fixtures; the random face pack and the photos are in
tools/random_face_pack.py (shared with the main job) and re-exported here.
"""
from __future__ import annotations

import contextlib

import host  # noqa: F401  (makes tools/ importable as pv_tools)
from pv_tools.random_face_pack import (PHOTOS, FakeSCRFD, box_from_kps, export_detector,  # noqa: F401
                                       export_recognizer, face_spec, make_pack, photo_bgr, photo_image, photo_kps)


@contextlib.contextmanager
def insightface_folders(*folders):
    """Point ComfyUI's ``insightface`` model folders at ``folders`` for the block."""
    import folder_paths

    saved = folder_paths.folder_names_and_paths.get("insightface")
    folder_paths.folder_names_and_paths["insightface"] = ([str(f) for f in folders], {".onnx"})
    try:
        yield
    finally:
        if saved is None:
            folder_paths.folder_names_and_paths.pop("insightface", None)
        else:
            folder_paths.folder_names_and_paths["insightface"] = saved


def centre_face_pack(root, recognizer: str | None = None, depth: str = "tiny") -> None:
    """An antelopev2-layout pack under ``root`` whose detector finds one large face in the middle of any
    textured frame (what the trainer's tests, workflow runs and benchmark generate)."""
    kps = photo_kps("astronaut")
    big = (kps - kps.mean(0)) * 3.0 + 256
    make_pack(root, faces=[face_spec(big, (512, 512))], recognizer=recognizer, depth=depth)


def centre_face_analysis(root, recognizer: str | None = None, depth: str = "tiny", encoder_cache=None):
    """A FaceAnalysis over :func:`centre_face_pack` with the given recogniser; its PyTorch encoder converted once."""
    from comfyui_personalvideo.training.face import analysis

    centre_face_pack(root, recognizer=recognizer, depth=depth)
    with insightface_folders(root):
        fa = analysis.build_face_analysis("antelopev2", "CPU")
    analysis.load_face_stack(fa).encoder(cache_dir=None if encoder_cache is None else str(encoder_cache))
    return fa


def scrfd(path, det_thresh: float = 0.5):
    """insightface's own SCRFD class over a CPU onnxruntime session."""
    import onnxruntime
    from insightface.model_zoo.scrfd import SCRFD

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = SCRFD(model_file=str(path), session=session)
    model.prepare(-1, det_thresh=det_thresh, input_size=(640, 640))
    return model


# ---- pytest fixtures (import them into a test module to use them) ----
import pytest  # noqa: E402


def save_small_photo(path, size: int = 64) -> str:
    """The astronaut photo at ``size`` x ``size`` as a PNG file (the command line's --photos)."""
    import torch
    from PIL import Image

    img = photo_image("astronaut").movedim(-1, 1)
    small = torch.nn.functional.interpolate(img, size=(size, size), mode="area")[0].permute(1, 2, 0)
    Image.fromarray((small.clamp(0, 1) * 255).round().to(torch.uint8).numpy()).save(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """A random-weight tiny iResNet recogniser exported to ONNX."""
    return export_recognizer(tmp_path_factory.mktemp("rec") / "tiny_iresnet.onnx", "tiny", seed=1)


@pytest.fixture(scope="session")
def astronaut_pack(tmp_path_factory, tiny_onnx):
    """An insightface folder holding antelopev2 with the fake detector (astronaut face) and the tiny recogniser."""
    root = tmp_path_factory.mktemp("insightface")
    make_pack(root, "antelopev2", recognizer=tiny_onnx)
    return root


@pytest.fixture(scope="module")
def centre_faces(tmp_path_factory, tiny_onnx):
    """A FACEANALYSIS from the loader node over :func:`centre_face_pack`: one face in the middle of any
    textured frame, none in a blank one."""
    from comfyui_personalvideo.nodes.load_face_analysis import LoadFaceAnalysis

    root = tmp_path_factory.mktemp("faces")
    centre_face_pack(root, recognizer=tiny_onnx)
    with insightface_folders(root):
        (fa,) = LoadFaceAnalysis().load("antelopev2", "CPU")
    return fa
