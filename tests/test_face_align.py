"""Alignment: our Umeyama estimate and differentiable warp against insightface/OpenCV."""
import numpy as np
import pytest
import torch

from comfyui_personalvideo.training.face import align
from face_fixtures import PHOTOS, photo_bgr, photo_kps


def _similarity(angle, scale, tx, ty):
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty], [0, 0, 1.0]])


def test_umeyama_recovers_a_known_similarity_transform():
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = _similarity(rng.uniform(-np.pi, np.pi), rng.uniform(0.2, 5), *rng.uniform(-300, 300, 2))
        src = rng.uniform(0, 500, (5, 2))
        dst = src @ t[:2, :2].T + t[:2, 2]
        np.testing.assert_allclose(align.umeyama(src, dst), t, atol=1e-8)


def test_umeyama_matches_skimage_least_squares_on_noisy_points():
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (5, 2))
    dst = src @ _similarity(0.3, 0.6, 10, -4)[:2, :2].T + rng.normal(0, 3, (5, 2))
    ref = SimilarityTransform()
    assert ref.estimate(src, dst)
    np.testing.assert_allclose(align.umeyama(src, dst), ref.params, atol=1e-9)


def test_umeyama_never_returns_a_reflection():
    src = np.array([[0, 0], [1, 0], [0, 1], [1, 1.0], [0.5, 0.2]])
    dst = src * np.array([-1.0, 1.0])  # a mirrored point set
    m = align.umeyama(src, dst)[:2, :2]
    assert np.linalg.det(m) > 0


def test_estimate_norm_maps_the_template_to_itself_and_matches_insightface():
    from insightface.utils import face_align

    np.testing.assert_allclose(align.estimate_norm(align.ARCFACE_TEMPLATE), np.eye(3)[:2], atol=1e-9)
    for name in PHOTOS:
        kps = photo_kps(name)
        np.testing.assert_allclose(align.estimate_norm(kps), face_align.estimate_norm(kps.astype(np.float32)),
                                   atol=1e-4)


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_differentiable_warp_matches_insightface_norm_crop_on_real_photos(name):
    from insightface.utils import face_align

    bgr, kps = photo_bgr(name), photo_kps(name)
    expected = face_align.norm_crop(bgr, kps.astype(np.float32)).astype(np.float32)
    image = torch.from_numpy(bgr.astype(np.float32)).permute(2, 0, 1)[None]
    ours = align.align_faces(image, kps[None])[0].permute(1, 2, 0).numpy()
    diff = np.abs(ours - expected)
    # OpenCV interpolates with 1/32-pixel fixed-point weights; the rest is identical.
    assert diff.mean() < 0.5, diff.mean()
    assert np.percentile(diff, 99) < 2.0
    assert diff.max() < 8.0
    # and the crop is a face where the template says: eyes darker than the cheeks below them
    grey = ours.mean(-1)
    assert grey[49:54, 36:41].mean() < grey[60:66, 36:41].mean()


def test_warp_of_a_template_face_is_the_identity():
    img = torch.rand(1, 3, 112, 112, dtype=torch.float64)
    out = align.warp_affine(img, np.eye(3)[:2][None])
    torch.testing.assert_close(out, img, atol=1e-6, rtol=0)


def test_gradients_reach_the_input_pixels_through_the_warp():
    torch.manual_seed(0)
    img = torch.rand(1, 3, 300, 400, dtype=torch.float64, requires_grad=True)
    kps = np.array([[90, 80], [140, 82], [115, 110], [95, 135], [138, 136.0]])
    weights = torch.rand(1, 3, 112, 112, dtype=torch.float64)
    (align.align_faces(img, kps[None]) * weights).sum().backward()
    grad = img.grad[0].abs().sum(0)
    assert grad[70:140, 80:150].sum() > 0  # the face region receives gradient
    assert grad[:, 300:].sum() == 0 and grad[250:].sum() == 0  # far outside the crop: none
    # the gradient is the true one: check one pixel by finite differences
    y, x, c = 100, 110, 1
    eps = 1e-4
    with torch.no_grad():
        plus, minus = img.detach().clone(), img.detach().clone()
        plus[0, c, y, x] += eps
        minus[0, c, y, x] -= eps
        fd = ((align.align_faces(plus, kps[None]) * weights).sum()
              - (align.align_faces(minus, kps[None]) * weights).sum()) / (2 * eps)
    assert abs(float(fd) - float(img.grad[0, c, y, x])) < 1e-6


def test_bad_keypoints_are_refused():
    with pytest.raises(ValueError):
        align.estimate_norm(np.full((5, 2), np.nan))
    with pytest.raises(ValueError):
        align.umeyama(np.zeros((5, 2)), np.ones((5, 2)))
