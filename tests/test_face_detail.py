"""The face detail pass (Face VCD): a steady track on a real face photo moving and growing across frames,
pixels outside the pasted mask untouched, frames without a face passed through and counted; the pass run
with the pack's face stack and a tiny SD1.5-layout model on the host's own sampler."""
import numpy as np
import pytest
import torch

from comfyui_personalvideo.face_detail import FaceDetailError, SamplingSettings, build_track, face_detail_pass
from comfyui_personalvideo.face_detail.crop import crop_box
from comfyui_personalvideo.face_detail.paste import feather_mask, paste_crops
from comfyui_personalvideo.face_detail.track import DETECTED, FILLED, NO_FACE
from comfyui_personalvideo.nodes.face_detail import FaceDetailPass

import tiny_models
from face_fixtures import box_from_kps, centre_faces, tiny_onnx  # noqa: F401
from pv_tools.random_face_pack import face_crop

FRAMES, SIDE = 24, 256
MISSED = (5, 11, 12)


def _moving_face_video():
    """Grace Hopper's face moving right and down while it grows, on a fixed textured background.
    Returns (IMAGE [F, SIDE, SIDE, 3], true face boxes [F, 4])."""
    import cv2

    crop, kps = face_crop("grace_hopper", size=256, margin=1.6)
    background = np.random.default_rng(0).integers(60, 200, (SIDE, SIDE, 3)).astype(np.uint8)
    frames, boxes = [], []
    for t in range(FRAMES):
        side = int(round(90 + 2.0 * t))              # the face grows
        left, top = int(round(20 + 3.0 * t + 10 * np.sin(t / 6))), int(round(30 + 1.5 * t + 10 * np.cos(t / 6)))
        frame = background.copy()
        frame[top:top + side, left:left + side] = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        frames.append(frame[..., ::-1].astype(np.float32) / 255.0)
        boxes.append(box_from_kps(kps * side / 256.0 + [left, top]))
    return torch.from_numpy(np.stack(frames)), np.stack(boxes)


def _centre_size(boxes):
    boxes = np.asarray(boxes, dtype=np.float64)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                     np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])], 1)


def _jitter(values):
    """Mean size of the second differences over frames (0 for steady, linear motion)."""
    return float(np.abs(np.diff(values, n=2, axis=0)).mean())


def test_track_is_steadier_and_closer_to_the_face_than_its_detections_and_fills_misses():
    _, truth = _moving_face_video()
    rng = np.random.default_rng(1)

    def detect(i):  # a detector double: the true box with +-8% jitter, missing some frames
        if i in MISSED:
            return None
        x1, y1, x2, y2 = truth[i]
        w = x2 - x1
        return np.array([x1, y1, x2, y2]) + rng.uniform(-0.08, 0.08, 4) * w

    detections = [detect(i) for i in range(FRAMES)]
    track = build_track(FRAMES, lambda i: detections[i], smoothing=2.0, max_gap=4)
    assert [i for i, s in enumerate(track.states) if s == FILLED] == list(MISSED)
    assert all(track.states[i] == DETECTED for i in range(FRAMES) if i not in MISSED)
    true = _centre_size(truth)
    got = np.concatenate([track.centres, track.sizes[:, None]], 1)
    seen = [i for i in range(FRAMES) if i not in MISSED]
    raw = _centre_size([detections[i] for i in seen])
    raw_error = np.abs(raw - true[seen]).mean()
    track_error = np.abs(got[seen] - true[seen]).mean()
    assert track_error < 0.7 * raw_error
    assert _jitter(got[seen]) < 0.35 * _jitter(raw)
    # filled frames land near the face: within 10% of its size
    assert (np.abs(got[list(MISSED), :2] - true[list(MISSED), :2]).max(1) < 0.1 * true[list(MISSED), 2]).all()


def test_track_over_a_real_detector_on_the_moving_photo_is_steady():
    """The same video through dlib's HOG frontal-face detector (a real detector with real jitter; built into
    dlib, which both test lanes carry, whereas OpenCV 5 ships no Haar cascades)."""
    import cv2
    import dlib

    hog = dlib.get_frontal_face_detector()
    video, truth = _moving_face_video()

    def detect(i):
        grey = np.ascontiguousarray(cv2.cvtColor((video[i].numpy() * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY))
        found = hog(grey, 1)
        if len(found) == 0:
            return None
        r = max(found, key=lambda b: b.width() * b.height())
        return np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=np.float64)

    detections = [detect(i) for i in range(FRAMES)]
    seen = [i for i, d in enumerate(detections) if d is not None]
    assert len(seen) >= FRAMES // 2, "the HOG detector should find this face in most frames"
    track = build_track(FRAMES, lambda i: detections[i], smoothing=2.0, max_gap=4)
    assert track.count(NO_FACE) == 0
    got = np.concatenate([track.centres, track.sizes[:, None]], 1)
    raw = _centre_size([detections[i] for i in seen])
    assert _jitter(got) <= 0.5 * _jitter(raw) + 1e-9
    # the track follows the face: its centre stays within a tenth of the face size of the true centre
    true = _centre_size(truth)
    assert (np.abs(got[:, :2] - true[:, :2]).max(1) < 0.1 * true[:, 2]).all()


def test_long_gaps_are_no_face_and_short_ones_are_filled():
    boxes = {0: [10, 10, 30, 30], 1: [12, 10, 32, 30], 8: [20, 10, 40, 30], 9: [22, 10, 42, 30]}
    track = build_track(12, lambda i: boxes.get(i), smoothing=0, max_gap=2)
    assert track.states == [DETECTED, DETECTED, FILLED, FILLED, NO_FACE, NO_FACE, FILLED, FILLED,
                            DETECTED, DETECTED, FILLED, FILLED]
    assert np.allclose(track.centres[3], track.centres[1]) and np.allclose(track.centres[6], track.centres[8])
    assert build_track(5, lambda i: None).count(NO_FACE) == 5


def test_feathered_paste_leaves_every_pixel_outside_the_mask_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 40, 50, 3, generator=g)
    boxes = [crop_box((20, 20), 10, 0.5, 40, 50), None, crop_box((45, 35), 16, 0.5, 40, 50)]  # the last at a corner
    assert boxes[2].left + boxes[2].side == 50 and boxes[2].top + boxes[2].side == 40  # kept inside the frame
    crops = torch.rand(2, 64, 64, 3, generator=g)
    for feather in (0.0, 0.15, 0.5):
        out, masks = paste_crops(frames, crops, boxes, feather)
        outside = masks == 0
        assert torch.equal(out[outside], frames[outside])
        assert torch.equal(out[1], frames[1])
        assert not torch.equal(out[0], frames[0]) and not torch.equal(out[2], frames[2])
        assert masks.max() <= 1 and (masks[0] > 0).sum() == boxes[0].side ** 2
    mask = feather_mask(20, 0.25)
    assert mask[10, 10] == 1 and 0 < mask[0, 0] < mask[0, 10] < 1


def test_bad_inputs_are_refused_by_name(tiny_model):
    settings = SamplingSettings()
    with pytest.raises(FaceDetailError, match="images must be an IMAGE batch"):
        face_detail_pass(torch.rand(32, 32, 3), lambda f: None, tiny_model, [], [], None, settings)
    with pytest.raises(FaceDetailError, match="working_size must be a multiple of 8"):
        face_detail_pass(torch.rand(2, 32, 32, 3), lambda f: None, tiny_model, [], [], None, settings,
                         working_size=100)
    with pytest.raises(FaceDetailError, match="denoise must be above 0"):
        face_detail_pass(torch.rand(2, 32, 32, 3), lambda f: None, tiny_model, [], [], None,
                         SamplingSettings(denoise=0.0))


def _video_with_a_blank_frame(blank=3, frames=6, side=96):
    video = torch.rand(frames, side, side, 3, generator=torch.Generator().manual_seed(2))
    video[blank] = 0.5
    return video


def test_pass_through_the_hosts_sampler_with_the_face_stack(centre_faces, tiny_model, conds):
    vae = tiny_models.tiny_vae()
    video = _video_with_a_blank_frame()
    node = FaceDetailPass()
    with torch.inference_mode():
        out, masks, preview, summary = node.run(video, centre_faces, tiny_model, conds[0], conds[1], vae, seed=1,
                                                steps=3, cfg=1.0, sampler_name="euler", scheduler="normal",
                                                denoise=0.8, working_size=64, padding=0.0, mask_feather=0.15,
                                                smoothing=2.0, max_gap=0)
    assert out.shape == video.shape and masks.shape == video.shape[:3] and preview.shape == video.shape
    # the blank frame has no face: passed through bit for bit, with an empty mask, and counted
    assert torch.equal(out[3], video[3]) and masks[3].max() == 0 and torch.equal(preview[3], video[3])
    assert "5 of 6 frames" in summary and "1 without a face passed through" in summary
    outside = masks == 0
    assert outside[[0, 1, 2, 4, 5]].any() and torch.equal(out[outside], video[outside])
    assert all(not torch.equal(out[i], video[i]) for i in (0, 1, 2, 4, 5))
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    # with gaps filled, the blank frame borrows its neighbours' face box and is re-denoised too
    with torch.inference_mode():
        out2, masks2, _, summary2 = node.run(video, centre_faces, tiny_model, conds[0], conds[1], vae, seed=1,
                                             steps=3, cfg=1.0, sampler_name="euler", scheduler="normal",
                                             denoise=0.8, working_size=64, padding=0.0, mask_feather=0.15,
                                             smoothing=2.0, max_gap=4)
    assert masks2[3].max() == 1 and "1 filled" in summary2 and "without a face" not in summary2


def test_video_without_any_face_comes_back_unchanged(centre_faces, tiny_model, conds):
    video = torch.full((3, 64, 64, 3), 0.25)
    with torch.inference_mode():
        out, masks, _, summary = FaceDetailPass().run(
            video, centre_faces, tiny_model, conds[0], conds[1], tiny_models.tiny_vae(), seed=0, steps=2, cfg=1.0,
            sampler_name="euler", scheduler="normal", denoise=0.8, working_size=64, padding=0.5, mask_feather=0.1,
            smoothing=2.0, max_gap=4)
    assert torch.equal(out, video) and masks.max() == 0 and "3 without a face" in summary
