"""Where region masks come from: halves and boxes sized to the latent, and per-frame person regions with a
steady left-to-right identity assignment (synthetic tracks, another pack's person mask, a real face detector)."""
import numpy as np
import pytest
import torch

import nodes
from comfyui_personalvideo.face_detail import FaceDetailError
from comfyui_personalvideo.regions import RegionError, assign_people, find_person_regions
from comfyui_personalvideo.regions.simple import box_mask, halves

from face_fixtures import centre_faces, tiny_onnx  # noqa: F401
from pv_tools.random_face_pack import face_crop


def _node(name):
    return nodes.NODE_CLASS_MAPPINGS[name]()


def _latent(frames=2, height=64, width=96):
    return {"samples": torch.zeros(frames, 4, height // 8, width // 8)}


def test_halves_are_sized_to_the_latent_and_add_up_to_one():
    left, right = _node("PV_RegionHalves").make(_latent(), 0.5, 0.0)
    assert left.shape == right.shape == (1, 64, 96)
    assert torch.equal(left + right, torch.ones(1, 64, 96))
    assert left[0, :, :48].eq(1).all() and left[0, :, 48:].eq(0).all()
    soft_left, soft_right = halves(64, 96, split=0.25, feather=0.2)
    torch.testing.assert_close(soft_left + soft_right, torch.ones(1, 64, 96))
    row = soft_left[0, 0]
    assert row[0] == 1 and row[-1] == 0 and bool(((row > 0) & (row < 1)).any())
    assert (row[1:] <= row[:-1]).all()                         # falls monotonically across the soft edge
    assert abs(float(row[24]) - 0.5) < 0.05                    # centred on the split


def test_box_covers_its_fractions_of_the_picture():
    (mask,) = _node("PV_RegionBox").make(_latent(), 0.5, 0.25, 0.25, 0.5, 0.0)
    assert mask.shape == (1, 64, 96)
    assert mask[0, 16:48, 48:72].eq(1).all() and float(mask.sum()) == 32 * 24
    soft = box_mask(64, 96, 0.5, 0.25, 0.25, 0.5, feather=0.1)
    assert soft[0, 32, 60] == 1 and soft[0, 0, 0] == 0 and bool(((soft > 0) & (soft < 1)).any())
    with pytest.raises(RegionError, match="covers nothing"):
        box_mask(64, 96, 0.5, 0.5, 0.0, 0.5)
    with pytest.raises(RegionError, match="must be between 0.0 and 1.0"):
        box_mask(64, 96, 1.5, 0.5, 0.1, 0.5)
    with pytest.raises(RegionError, match="must be a LATENT"):
        _node("PV_RegionBox").make(torch.zeros(1, 4, 8, 8), 0, 0, 1, 1, 0)


def _crossing_candidates(frames=12, width=240):
    """Two people walking past each other: A from x=40 to 200 (upper row), B from 200 to 40 (lower row).
    Candidates come in a shuffled order, B is missed in frames 3 and 4, a small false detection in frame 6."""
    rng = np.random.default_rng(0)
    out, truth = [], []
    for f in range(frames):
        t = f / (frames - 1)
        a, b = (40 + 160 * t, 60.0, 50.0), (200 - 160 * t, 160.0, 48.0)
        found = [a] + ([] if f in (3, 4) else [b]) + ([(120.0, 20.0, 8.0)] if f == 6 else [])
        rng.shuffle(found)
        out.append([tuple(c) for c in found])
        truth.append((a, b))
    return out, truth


def test_people_keep_their_left_to_right_numbers_when_they_walk_past_each_other():
    candidates, truth = _crossing_candidates()
    tracks = assign_people(candidates, people=2, smoothing=1.0, max_gap=4)
    for f, (a, b) in enumerate(truth):
        assert abs(tracks[0].centres[f][0] - a[0]) < 12 and abs(tracks[0].centres[f][1] - a[1]) < 12
        assert abs(tracks[1].centres[f][0] - b[0]) < 12 and abs(tracks[1].centres[f][1] - b[1]) < 12
    assert tracks[1].states[3] == tracks[1].states[4] == "filled"


def test_person_regions_follow_the_people_from_another_packs_person_mask():
    frames, height, width = 8, 48, 96
    silhouettes = torch.zeros(frames, height, width)
    for f in range(frames):      # two people 20 px wide, the left one walks right, the right one stands
        silhouettes[f, 8:44, 5 + 4 * f:25 + 4 * f] = 1
        silhouettes[f, 8:44, 70:90] = 1
    images = torch.rand(frames, height, width, 3, generator=torch.Generator().manual_seed(0))
    one, two, preview, summary = _node("PV_PersonRegions").find(images, 0.0, 1.0, 4, person_mask=silhouettes)
    assert one.shape == two.shape == (frames, height, width) and preview.shape == images.shape
    for f in range(frames):
        assert one[f, 8:44, 5 + 4 * f:25 + 4 * f].eq(1).all() and two[f, 8:44, 70:90].eq(1).all()
        assert torch.equal(one[f] + two[f], silhouettes[f])     # each a silhouette, nothing else
    assert "person mask" in summary and f"person 1 {frames} of {frames}" in summary
    with pytest.raises(RegionError, match="has 3 frames but images has 8"):
        find_person_regions(images, person_mask=silhouettes[:3])
    with pytest.raises(RegionError, match="connect face_analysis"):
        find_person_regions(images)


def _two_face_video(frames=10, height=224, width=320):
    """Grace Hopper (upper row) walks right, the astronaut (lower row) walks left, past each other.
    Returns (IMAGE, [(grace centre x, y), (astronaut centre x, y)] per frame)."""
    import cv2

    background = np.random.default_rng(1).integers(60, 200, (height, width, 3)).astype(np.uint8)
    crops = [face_crop(name, size=96, margin=1.6)[0] for name in ("grace_hopper", "astronaut")]
    video, centres = [], []
    for f in range(frames):
        t = f / (frames - 1)
        lefts, tops = (int(10 + 200 * t), int(210 - 200 * t)), (4, 124)
        frame = background.copy()
        for crop, left, top in zip(crops, lefts, tops):
            frame[top:top + 96, left:left + 96] = crop
        video.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
        centres.append([(left + 48, top + 48) for left, top in zip(lefts, tops)])
    return torch.from_numpy(np.stack(video)), centres


def test_person_regions_from_a_real_face_detector_keep_each_person_in_their_own_region():
    """dlib's HOG detector (a real detector, on both test lanes) finds the two real faces in every frame."""
    video, centres = _two_face_video()
    detect_all = _hog_detect_all()

    result = find_person_regions(video, detect_all, feather=0.0, smoothing=1.0)
    grace, astronaut = result.masks
    assert centres[0][0][0] < centres[0][1][0] and centres[-1][0][0] > centres[-1][1][0]   # they do cross
    for f, ((gx, gy), (ax, ay)) in enumerate(centres):
        assert grace[f, gy, gx] == 1 and astronaut[f, gy, gx] == 0, f"frame {f}: Grace is not in region 1"
        assert astronaut[f, ay, ax] == 1 and grace[f, ay, ax] == 0, f"frame {f}: the astronaut is not in region 2"


def test_person_regions_node_with_the_face_stack_needs_both_people(centre_faces):  # noqa: F811
    """The random face pack of the tests finds one (centre) face per frame: not two people, said clearly."""
    images = torch.rand(3, 128, 128, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RegionError, match="no frame shows all 2 people"):
        _node("PV_PersonRegions").find(images, 0.05, 2.0, 4, face_analysis=centre_faces)


def _hog_detect_all():
    import cv2
    import dlib

    hog = dlib.get_frontal_face_detector()

    def detect_all(frame):
        grey = np.ascontiguousarray(cv2.cvtColor((frame.numpy() * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY))
        return [np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=np.float64) for r in hog(grey, 1)]

    return detect_all


def test_face_detail_with_two_identities_redraws_each_persons_face_with_its_own_model(tiny_model, make_adapter,
                                                                                     conds):
    """Two chained passes, each with one person's region (from Person Regions), adapter A's or B's MODEL: each
    pass redraws and pastes only over its own person's face, following them as they cross."""
    import tiny_models
    from comfyui_personalvideo.face_detail import SamplingSettings, face_detail_pass
    from comfyui_personalvideo.face_detail.detect import region_detector
    from comfyui_personalvideo.sia import apply_sia

    video, centres = _two_face_video(frames=6)
    detect_all, vae = _hog_detect_all(), tiny_models.tiny_vae()
    regions = find_person_regions(video, detect_all, smoothing=1.0).masks
    settings = SamplingSettings(seed=1, steps=2, cfg=1.0, sampler_name="euler", scheduler="normal", denoise=0.8)
    passes, frames = [], video
    for person, seed in ((0, 1), (1, 2)):
        model = apply_sia(tiny_model, make_adapter(tiny_model, seed=seed), 1.0, 0.0)[0]
        with torch.inference_mode():
            result = face_detail_pass(frames, None, model, conds[0], conds[1], vae, settings, working_size=64,
                                      padding=0.2, smoothing=1.0,
                                      detect_index=lambda f, p=person: region_detector(f, detect_all, regions[p]))
        passes.append(result.masks)
        frames = result.images
    for f, ((gx, gy), (ax, ay)) in enumerate(centres):
        assert passes[0][f, gy, gx] > 0.9 and passes[0][f, ay, ax] == 0, f"frame {f}: pass 1 is not on Grace"
        assert passes[1][f, ay, ax] > 0.9 and passes[1][f, gy, gx] == 0, f"frame {f}: pass 2 is not on the astronaut"
    untouched = (passes[0] == 0) & (passes[1] == 0)
    assert torch.equal(frames[untouched], video[untouched])
    with pytest.raises(FaceDetailError, match="region mask has 2 frames but images has 6"):
        region_detector(video, detect_all, regions[0][:2])


def test_face_detail_node_follows_only_the_face_inside_its_region(centre_faces, tiny_model, conds):  # noqa: F811
    """The test face pack finds one face in the middle of each textured frame: a region around the middle takes
    it, a region away from it leaves every frame as it was."""
    import tiny_models
    from comfyui_personalvideo.nodes.face_detail import FaceDetailPass

    video = torch.rand(3, 96, 96, 3, generator=torch.Generator().manual_seed(2))
    middle, corner = torch.zeros(1, 48, 48), torch.zeros(3, 48, 48)
    middle[:, 12:36, 12:36] = 1
    corner[:, :10, :10] = 1
    settings = dict(seed=1, steps=2, cfg=1.0, sampler_name="euler", scheduler="normal", denoise=0.8,
                    working_size=64, padding=0.0, mask_feather=0.15, smoothing=2.0, max_gap=0)
    vae = tiny_models.tiny_vae()
    with torch.inference_mode():
        inside = FaceDetailPass().run(video, centre_faces, tiny_model, conds[0], conds[1], vae, region=middle,
                                      **settings)
        outside = FaceDetailPass().run(video, centre_faces, tiny_model, conds[0], conds[1], vae, region=corner,
                                       **settings)
    assert "3 of 3 frames" in inside[3] and inside[1].amax(dim=(1, 2)).eq(1).all()
    assert "0 of 3 frames" in outside[3] and torch.equal(outside[0], video)


def test_each_regions_face_scores_higher_against_its_own_photos_than_the_others():
    """The scoring plumbing on real faces: Grace Hopper walks in region 1, the astronaut in region 2; each
    region's face is scored (dlib's recogniser) against both people's photos."""
    from comfyui_personalvideo.regions.region_scores import region_frames, score_regions

    from pv_tools.random_face_pack import photo_bgr

    pytest.importorskip("dlib")
    video, centres = _two_face_video(frames=4)
    regions = find_person_regions(video, _hog_detect_all(), smoothing=1.0).masks
    photos = [torch.from_numpy(photo_bgr(name)[..., ::-1].astype(np.float32) / 255.0)[None]
              for name in ("grace_hopper", "astronaut")]
    reports = score_regions(video, [regions[0], regions[1]], photos, recogniser="dlib", detector="dlib_hog")
    distance = [[r["identity"]["dlib_distance"] for r in row] for row in reports]
    assert all(r["identity"]["frames_scored"] == 4 for row in reports for r in row)
    assert distance[0][0] < 0.6 < distance[0][1], distance      # region 1: Grace, not the astronaut
    assert distance[1][1] < 0.6 < distance[1][0], distance      # region 2: the astronaut, not Grace
    (gx, gy), (ax, ay) = centres[0]
    greyed = region_frames(video, regions[0])
    assert torch.equal(greyed[0, gy, gx], video[0, gy, gx]) and torch.all(greyed[0, ay, ax] == 0.5)
