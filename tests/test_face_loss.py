"""Identity loss, face similarity, FACEANALYSIS interoperability and the loader node."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from comfyui_personalvideo.training.face import analysis, identity_loss, references
from comfyui_personalvideo.training.face.detector import sizes_for
from comfyui_personalvideo.training.face.errors import FaceStackError
from comfyui_personalvideo.training.face.identity_loss import IdentityLoss
from face_scores import face_similarity
from face_fixtures import (astronaut_pack, insightface_folders, photo_bgr, photo_image,  # noqa: F401
                           photo_kps, tiny_onnx)

ASTRO_KPS = photo_kps("astronaut")


@pytest.fixture(scope="module")
def stack(astronaut_pack, tmp_path_factory):
    with insightface_folders(astronaut_pack):
        fa = analysis.build_face_analysis("antelopev2", "CPU")
    s = analysis.load_face_stack(fa)
    s.encoder(cache_dir=str(tmp_path_factory.mktemp("cache")))
    return s


@pytest.fixture(scope="module")
def insightface_app(astronaut_pack):
    """insightface's own FaceAnalysis over the same files (what PuLID/InstantID loaders return)."""
    from insightface.app import FaceAnalysis

    fa = FaceAnalysis(name="antelopev2", root=str(astronaut_pack), providers=["CPUExecutionProvider"])
    fa.prepare(ctx_id=-1, det_size=(640, 640))
    return fa


def _frames(*names):
    """[B, 3, 512, 512] frames in 0..1 (channels first, like the VAE decoder output)."""
    out = []
    for n in names:
        if n == "blank":
            out.append(torch.full((3, 512, 512), 0.5))
        else:
            out.append(photo_image(n)[0, :512, :512].movedim(-1, 0))
    return torch.stack(out).contiguous()


def _insightface_embedding(app, frame_chw):
    bgr = (frame_chw.movedim(0, -1).numpy()[..., ::-1] * 255).round().astype(np.uint8)
    faces = app.get(np.ascontiguousarray(bgr))
    assert len(faces) == 1
    return torch.from_numpy(faces[0].normed_embedding).float()


def test_loss_is_one_minus_cosine_averaged_over_references(stack, insightface_app):
    enc = stack.encoder()
    refs = references.embed_references(stack.detector, enc, [photo_image("astronaut"), photo_image("grace_hopper")[:, :512]])
    assert refs.embeddings.shape == (2, 512) and not refs.embeddings.requires_grad
    frames = _frames("grace_hopper", "astronaut")
    result = IdentityLoss(stack.detector, enc, refs.embeddings)(frames)
    assert result.face_frames == [0, 1] and result.skipped == 0
    # the same quantities computed independently by insightface (cv2 alignment + onnxruntime)
    e_ref = torch.stack([_insightface_embedding(insightface_app, f) for f in _frames("astronaut", "grace_hopper")])
    e_frames = torch.stack([_insightface_embedding(insightface_app, f) for f in frames])
    expected_per_frame = (e_frames @ e_ref.T).mean(1)
    torch.testing.assert_close(result.similarity, expected_per_frame, atol=5e-3, rtol=0)
    assert abs(result.loss.detach().item() - float((1 - expected_per_frame).mean())) < 5e-3
    # a frame of the reference person is closer than a frame of someone else
    single = IdentityLoss(stack.detector, enc, refs.embeddings[:1])(frames)
    assert single.similarity[1] > 0.99 and single.similarity[0] < single.similarity[1]


def test_gradient_reaches_frame_pixels_not_encoder_weights(stack):
    enc = stack.encoder()
    refs = references.embed_references(stack.detector, enc, photo_image("astronaut"))
    loss_fn = IdentityLoss(stack.detector, enc, refs.embeddings)
    frames = _frames("grace_hopper").requires_grad_(True)
    out = loss_fn(frames)
    out.loss.backward()
    g = frames.grad[0].abs().sum(0)
    assert g[80:160, 190:260].sum() > 0  # the face
    assert g[400:, :].sum() == 0 and g[:, 400:].sum() == 0  # far from the face
    assert all(p.grad is None for p in enc.parameters())
    # the gradient points the right way: a few steps on the pixels lower the loss
    x = _frames("grace_hopper").requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.01)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        r = loss_fn(x)
        losses.append(r.loss.detach().item())
        r.loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    assert losses[-1] < losses[0] - 0.02, losses


def test_frames_without_face_are_skipped_and_counted(stack):
    enc = stack.encoder()
    refs = references.embed_references(stack.detector, enc, photo_image("astronaut"))
    loss_fn = IdentityLoss(stack.detector, enc, refs.embeddings)
    frames = _frames("astronaut", "blank", "grace_hopper").requires_grad_(True)
    r = loss_fn(frames)
    assert r.face_frames == [0, 2] and r.skipped_frames == [1] and r.has_face
    assert torch.isnan(r.similarity[1]) and not torch.isnan(r.similarity[[0, 2]]).any()
    r.loss.backward()
    assert frames.grad[1].abs().sum() == 0
    none = _frames("blank", "blank").requires_grad_(True)
    r2 = loss_fn(none)
    assert not r2.has_face and r2.skipped == 2 and r2.loss.detach().item() == 0.0
    r2.loss.backward()  # never a crash
    assert none.grad is not None and none.grad.abs().sum() == 0
    with pytest.raises(FaceStackError, match="movedim"):
        loss_fn(frames.detach().movedim(1, -1))


def test_detector_sizes_for_a_picture_start_at_the_smallest_that_holds_it():
    assert sizes_for(64, 64) == (320, 640, 480)
    assert sizes_for(300, 400) == (480, 640, 320)
    assert sizes_for(512, 512) == (640, 480, 320)          # the default frame size: as before
    assert sizes_for(720, 1280) == (640, 480, 320)         # larger than every size: as given
    assert sizes_for(64, 64, (640,)) == (640,)


def test_the_loss_detects_a_small_frame_first_at_the_smallest_size_that_holds_it(stack, monkeypatch):
    enc = stack.encoder()
    refs = references.embed_references(stack.detector, enc, photo_image("astronaut"))
    big = _frames("astronaut")
    small = torch.nn.functional.interpolate(big, size=(256, 256), mode="area")
    model, sizes = stack.detector.model, []
    detect = model.detect

    def spied(img, input_size=None, **kwargs):
        sizes.append(input_size)
        return detect(img, input_size=input_size, **kwargs)

    monkeypatch.setattr(model, "detect", spied)
    loss_fn = IdentityLoss(stack.detector, enc, refs.embeddings)
    assert loss_fn(big).face_frames == [0] and sizes == [(640, 640)]
    sizes.clear()
    found = loss_fn(small)
    assert found.face_frames == [0] and sizes == [(320, 320)]
    # the same face as at 640: the same crop, within the rounding of the detector's keypoints
    at_640 = IdentityLoss(stack.detector, enc, refs.embeddings, det_sizes=(640,))(small)
    assert sizes[-1] == (640, 640)
    assert abs(float(found.similarity[0]) - float(at_640.similarity[0])) < 0.02


def test_the_loss_moves_the_encoder_only_when_it_is_on_another_device(stack, monkeypatch):
    # Module.to visits every weight (ResNet-100: some 900 tensors, milliseconds of host time per iteration)
    enc = stack.encoder()
    refs = references.embed_references(stack.detector, enc, photo_image("astronaut"))
    loss_fn = IdentityLoss(stack.detector, enc, refs.embeddings)
    moves, move = [], enc.to
    monkeypatch.setattr(enc, "to", lambda *args, **kwargs: moves.append(args) or move(*args, **kwargs))
    frames = _frames("astronaut")
    assert loss_fn(frames).has_face and loss_fn(frames).has_face
    assert moves == []
    # an encoder found elsewhere goes to the frames' device (read as the meta device here: CI has one device)
    monkeypatch.setattr(identity_loss, "device_of", lambda obj, fallback=None: torch.device("meta"))
    assert loss_fn(frames).has_face
    assert moves == [(torch.device("cpu"),)]


def test_face_similarity_with_either_recogniser(stack):
    frames = torch.cat([photo_image("astronaut"), torch.full((1, 512, 512, 3), 0.5),
                        photo_image("grace_hopper")[:, :512]])
    refs = photo_image("astronaut")
    by_torch = face_similarity(stack.detector, stack.encoder(), frames, refs)
    by_onnx = face_similarity(stack.detector, stack.onnx_recognizer(), frames, refs)
    for report in (by_torch, by_onnx):
        assert report.no_face == [1] and report.scores[1] is None
        assert report.scores[0] > 0.99 and report.scores[2] < report.scores[0]
        assert "no face in frame(s) 1" in report.summary()
    assert abs(by_torch.scores[2] - by_onnx.scores[2]) < 5e-3
    with pytest.raises(FaceStackError, match="same recogniser"):
        face_similarity(stack.detector, stack.encoder(), frames, torch.randn(2, 64))


def test_loader_node(astronaut_pack, tmp_path):
    import nodes

    cls = nodes.NODE_CLASS_MAPPINGS["PV_LoadFaceAnalysis"]
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["PV_LoadFaceAnalysis"] == "Load Face Analysis (PersonalVideo)"
    assert cls.RETURN_TYPES == ("FACEANALYSIS",) and cls.CATEGORY == "PersonalVideo"
    spec = cls.INPUT_TYPES()["required"]
    assert spec["provider"][1]["default"] == "auto" and spec["model_pack"][1]["default"] == "antelopev2"
    assert set(spec["provider"][0]) == {"auto", "CUDA", "CPU", "ROCm", "DirectML"}
    assert "buffalo_l" in spec["model_pack"][0]
    assert all(opts.get("tooltip") for _, opts in spec.values()) and all(cls.OUTPUT_TOOLTIPS)
    node = cls()
    with insightface_folders(astronaut_pack):
        (fa,) = getattr(node, cls.FUNCTION)(model_pack="antelopev2", provider="auto")
    assert fa.get(photo_bgr("astronaut"))
    with insightface_folders(tmp_path), pytest.raises(FaceStackError) as err:
        getattr(node, cls.FUNCTION)(model_pack="antelopev2", provider="CPU")
    assert str(tmp_path / "models" / "antelopev2") in str(err.value)


def test_importing_the_face_stack_imports_no_heavy_library():
    tests_dir = os.path.dirname(__file__)
    code = (
        "import sys; sys.path.insert(0, %r); import host; host.bootstrap()\n"
        "heavy = ('insightface', 'onnxruntime', 'onnx2torch', 'onnx')\n"
        "before = {m for m in heavy if m in sys.modules}  # the 2024 host itself imports onnxruntime\n"
        "import comfyui_personalvideo.training.face as f\n"
        "from comfyui_personalvideo.training.face import align, analysis, augment, detector, encoder, "
        "identity_loss, iresnet, model_paths, providers, references\n"
        "from comfyui_personalvideo.nodes import load_face_analysis\n"
        "bad = [m for m in heavy if m in sys.modules and m not in before]\n"
        "assert not bad, bad\n"
    ) % tests_dir
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_stack_built_inside_a_node_still_trains(astronaut_pack, tmp_path):
    """ComfyUI runs nodes under inference_mode: the loader, the encoder and the references are made
    there, the trainer then runs the loss under inference_mode(False) and backpropagates."""
    with torch.inference_mode():
        with insightface_folders(astronaut_pack):
            fa = analysis.build_face_analysis("antelopev2", "CPU")
        s = analysis.load_face_stack(fa)
        enc = s.encoder(device="cpu", cache_dir=str(tmp_path))
        refs = references.embed_references(s.detector, enc, photo_image("astronaut"))
        loss_fn = IdentityLoss(s.detector, enc, refs.embeddings)
        assert refs.embeddings.is_inference()
    assert not any(p.is_inference() for p in enc.parameters())
    with torch.inference_mode(False):
        frames = _frames("grace_hopper").requires_grad_(True)
        out = loss_fn(frames)
        out.loss.backward()
    assert frames.grad.abs().sum() > 0
