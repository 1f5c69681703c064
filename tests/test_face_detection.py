"""Model folders, onnxruntime providers, SCRFD detection and reference faces."""
import logging
import sys

import numpy as np
import pytest
import torch

from comfyui_personalvideo.training.face import model_paths, providers, references
from comfyui_personalvideo.training.face.detector import FaceDetector
from comfyui_personalvideo.training.face.errors import FaceStackError
from face_fixtures import (astronaut_pack, export_detector, face_spec, insightface_folders,  # noqa: F401
                           make_pack, photo_bgr, photo_image, photo_kps, tiny_onnx)

ASTRO_KPS = photo_kps("astronaut")


# ---------------------------------------------------------------- model folders

def test_pack_is_found_in_the_insightface_folder_like_pulid_expects(astronaut_pack):
    with insightface_folders(astronaut_pack):
        files = model_paths.find_model_pack("antelopev2")
    assert files.folder == str(astronaut_pack / "models" / "antelopev2")
    assert files.detector.endswith("scrfd_10g_bnkps.onnx") and files.recognizer.endswith("glintr100.onnx")
    assert not files.nested


def test_second_insightface_folder_from_extra_model_paths_is_searched(tmp_path, astronaut_pack):
    with insightface_folders(tmp_path / "empty", astronaut_pack):
        assert model_paths.find_model_pack("antelopev2").folder.startswith(str(astronaut_pack))


def test_nested_folder_is_used_with_one_notice(tmp_path, tiny_onnx, caplog):
    make_pack(tmp_path, "antelopev2", nested=True, recognizer=tiny_onnx)
    with insightface_folders(tmp_path), caplog.at_level(logging.WARNING):
        a = model_paths.find_model_pack("antelopev2")
        b = model_paths.find_model_pack("antelopev2")
    assert a.nested and a.folder == b.folder == str(tmp_path / "models" / "antelopev2" / "antelopev2")
    notices = [r for r in caplog.records if "nested folder" in r.getMessage()]
    assert len(notices) == 1 and str(tmp_path / "models" / "antelopev2") in notices[0].getMessage()


def test_missing_pack_error_lists_paths_and_file_names(tmp_path):
    (tmp_path / "b" / "models" / "antelopev2").mkdir(parents=True)
    (tmp_path / "b" / "models" / "antelopev2" / "glintr100.onnx").write_bytes(b"x")
    with insightface_folders(tmp_path / "a", tmp_path / "b"), pytest.raises(FaceStackError) as err:
        model_paths.find_model_pack("antelopev2")
    msg = str(err.value)
    for path in (tmp_path / "a" / "models" / "antelopev2", tmp_path / "a" / "models" / "antelopev2" / "antelopev2",
                 tmp_path / "b" / "models" / "antelopev2"):
        assert str(path) in msg
    assert "scrfd_10g_bnkps.onnx" in msg and "glintr100.onnx" in msg
    assert "has glintr100.onnx only" in msg and "never downloads" in msg
    # where people get the pack: insightface has no download of antelopev2, the face packs point to a copy
    assert "antelopev2.zip" in msg and "PuLID and InstantID" in msg and "huggingface.co/MonsterMMORPG/tools" in msg
    # the parts the doctor shows apart: where it looked, and the folder the files belong in
    assert err.value.summary in msg and "Put the" not in err.value.summary
    assert err.value.expected == str(tmp_path / "a" / "models" / "antelopev2")
    with pytest.raises(FaceStackError, match="unknown face model pack"):
        model_paths.find_model_pack("antelopev3")


def test_buffalo_l_is_accepted(tmp_path, tiny_onnx):
    make_pack(tmp_path, "buffalo_l", recognizer=tiny_onnx)
    with insightface_folders(tmp_path):
        files = model_paths.find_model_pack("buffalo_l")
    assert files.detector.endswith("det_10g.onnx") and files.recognizer.endswith("w600k_r50.onnx")


# ---------------------------------------------------------------- providers

def test_auto_provider_is_the_best_available_and_cpu_is_always_the_fallback():
    import onnxruntime

    chosen = providers.requested_providers("auto")
    assert chosen[-1] == "CPUExecutionProvider"
    have = onnxruntime.get_available_providers()
    gpu = [p for p in ("CUDAExecutionProvider", "ROCMExecutionProvider") if p in have]
    assert chosen[0] == (gpu[0] if gpu else "CPUExecutionProvider")
    assert providers.requested_providers("ROCm") == ["ROCMExecutionProvider", "CPUExecutionProvider"]
    assert providers.requested_providers("DirectML") == ["DmlExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(FaceStackError, match="provider must be one of"):
        providers.requested_providers("TPU")


def test_cuda_fallback_to_cpu_is_reported_once_with_onnxruntime_reason(astronaut_pack, caplog, monkeypatch):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: no fallback to observe")
    monkeypatch.setattr(providers, "_noticed", set())
    det = str(astronaut_pack / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx")
    with caplog.at_level(logging.WARNING):
        s1 = providers.create_session(det, "CUDA")
        s2 = providers.create_session(det, "CUDA")
    assert s1.get_providers() == ["CPUExecutionProvider"] == s2.get_providers()
    notices = [r.getMessage() for r in caplog.records if "CUDAExecutionProvider was requested" in r.getMessage()]
    assert len(notices) == 1
    assert "not in available provider names" in notices[0]  # onnxruntime's own words
    assert "onnxruntime-gpu" in notices[0]


def test_corrupt_detector_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "scrfd_10g_bnkps.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(FaceStackError, match="scrfd_10g_bnkps.onnx.*corrupt"):
        FaceDetector.from_file(str(bad), "CPU")


def test_missing_onnxruntime_is_an_import_error_not_a_corrupt_file(astronaut_pack, monkeypatch):
    with insightface_folders(astronaut_pack):
        det = model_paths.find_model_pack("antelopev2").detector
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(ImportError):
        providers.create_session(det, "CPU")


# ---------------------------------------------------------------- detection

def _detector(tmp_path, faces, name="det.onnx"):
    return FaceDetector.from_file(export_detector(tmp_path / name, faces), "CPU")


def test_insightface_scrfd_decoding_finds_the_face_at_every_size(tmp_path):
    det = _detector(tmp_path, [face_spec(ASTRO_KPS, (512, 512))])
    img = photo_bgr("astronaut")
    for size in (640, 480, 320):
        face = det.detect_largest(img, det_sizes=(size,))
        assert face is not None and face.det_size == size
        np.testing.assert_allclose(face.kps, ASTRO_KPS, atol=1e-3)
    assert det.detect_largest(np.zeros_like(img)) is None  # blank: no face
    flat = img.copy()
    flat[60:170, 170:280] = 128  # the face painted over
    assert det.detect_largest(flat) is None


def test_retries_at_smaller_detector_sizes(tmp_path):
    det = _detector(tmp_path, [face_spec(ASTRO_KPS, (512, 512), max_det=320)])
    face = det.detect_largest(photo_bgr("astronaut"))
    assert face is not None and face.det_size == 320
    assert det.detect_largest(photo_bgr("astronaut"), det_sizes=(640, 480)) is None


def test_largest_face_is_taken_not_the_first_or_smallest(tmp_path):
    small = ASTRO_KPS * 0.5 + np.array([300.0, 300.0])  # a half-size face lower right
    det = _detector(tmp_path, [face_spec(small, (512, 512)), face_spec(ASTRO_KPS, (512, 512))])
    img = photo_bgr("astronaut")
    img[330:430, 360:460] = photo_bgr("astronaut")[60:160, 170:270]  # texture where the small face is
    faces = det.detect_all(img)
    assert len(faces) == 2
    np.testing.assert_allclose(faces[0].kps, ASTRO_KPS, atol=1e-3)
    refs = references.detect_references(det, photo_image("astronaut").clone().copy_(
        torch.from_numpy(img[..., ::-1].copy()).float()[None] / 255))
    np.testing.assert_allclose(refs.faces[0].kps, ASTRO_KPS, atol=1e-3)


# ---------------------------------------------------------------- references

def test_references_report_images_without_face_and_keep_the_rest(tmp_path):
    det = _detector(tmp_path, [face_spec(ASTRO_KPS, (512, 512))])
    astro = photo_image("astronaut")
    blank = torch.full_like(astro, 0.5)
    refs = references.detect_references(det, torch.cat([blank, astro, blank]))
    assert refs.labels == ["reference image 2"] and refs.crops.shape == (1, 3, 112, 112)
    assert set(refs.skipped) == {"reference image 1", "reference image 3"}
    assert all("no face found" in v for v in refs.skipped.values())
    with pytest.raises(FaceStackError) as err:
        references.detect_references(det, torch.cat([blank, blank]))
    assert "reference image 1: no face" in str(err.value) and "reference image 2: no face" in str(err.value)


def test_reference_crop_equals_insightface_norm_crop(tmp_path):
    from insightface.utils import face_align

    det = _detector(tmp_path, [face_spec(ASTRO_KPS, (512, 512))])
    refs = references.detect_references(det, photo_image("astronaut"))
    expected = face_align.norm_crop(photo_bgr("astronaut"), ASTRO_KPS.astype(np.float32))[..., ::-1] / 255.0
    ours = refs.crops[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - expected).mean() < 0.5 / 255


def test_rgba_grey_and_list_inputs_of_different_sizes(tmp_path):
    det = _detector(tmp_path, [face_spec(ASTRO_KPS, (512, 512))])
    astro = photo_image("astronaut")
    rgba = torch.cat([astro, torch.ones_like(astro[..., :1])], -1)
    grey = astro.mean(-1, keepdim=True)
    refs = references.detect_references(det, [rgba, grey, torch.nn.functional.interpolate(
        astro.movedim(-1, 1), size=(256, 256), mode="bilinear").movedim(1, -1)])
    assert len(refs.labels) == 3 and not refs.skipped
    np.testing.assert_allclose(refs.faces[2].kps, ASTRO_KPS / 2, atol=1e-3)
    torch.testing.assert_close(refs.crops[1][0], refs.crops[1][2])  # grey stays grey
    with pytest.raises(FaceStackError, match="C = 1 \\(grey\\), 3 \\(RGB\\) or 4"):
        references.detect_references(det, torch.zeros(1, 64, 64, 2))


def test_empty_batch_and_tiny_faces_are_clear(tmp_path):
    tiny_kps = np.array([[220, 140], [228, 140], [224, 144], [221, 148], [227, 148.0]])  # on the smile
    det = _detector(tmp_path, [face_spec(tiny_kps, (512, 512))])
    with pytest.raises(FaceStackError, match="batch is empty"):
        references.detect_references(det, torch.zeros(0, 64, 64, 3))
    with pytest.raises(FaceStackError, match="face too small"):
        references.detect_references(det, photo_image("astronaut"))


def test_augmentation_is_seeded_and_keeps_range(tmp_path):
    from comfyui_personalvideo.training.face.augment import augment_crops

    det = _detector(tmp_path, [face_spec(ASTRO_KPS, (512, 512))])
    crops = references.detect_references(det, photo_image("astronaut")).crops
    a = augment_crops(crops, 3, seed=7)
    b = augment_crops(crops, 3, seed=7)
    c = augment_crops(crops, 3, seed=8)
    assert a.shape == (3, 3, 112, 112)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert (a - c).abs().mean() > 1e-3
    assert a.min() >= 0 and a.max() <= 1
    assert all((a[i] - crops[0]).abs().mean() > 1e-3 for i in range(3))  # each copy is changed...
    from comfyui_personalvideo.training.face.augment import AugmentConfig

    # ...lightly: the geometry moves the face by a few pixels only,
    geo = augment_crops(crops, 8, seed=7, cfg=AugmentConfig(0, 0, 0, 0, mirror=False))
    six_px_shift = (torch.roll(crops, 6, dims=-1) - crops)[..., 6:].abs().mean()
    assert (geo - crops).abs().mean((1, 2, 3)).max() < six_px_shift
    # and the colour jitter keeps the picture's structure
    col = augment_crops(crops, 8, seed=7, cfg=AugmentConfig(rotation_deg=0, scale=0, shift_px=0, mirror=False))
    for img in col:
        assert torch.corrcoef(torch.stack([img.mean(0).flatten(), crops[0].mean(0).flatten()]))[0, 1] > 0.95
