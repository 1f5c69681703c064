"""Stage 1's training crops from real photos of any size, shape and number.

Photos: matplotlib's grace_hopper.jpg (512x600, portrait), scikit-image's astronaut.png (512x512), a
landscape 512x300 cut of the astronaut, and Grace Hopper upscaled 4.5x (2304x2700). The face detector
is a real one: dlib's HOG frontal-face detector (built into dlib, no weights file; OpenCV 5 ships no Haar
cascades, so those are not used), wrapped in the detector interface the
references code drives (boxes, and keypoints placed in the box where ArcFace's template puts them; only
the boxes matter for the crops). The same real detector then checks each crop: a face, near the middle,
at the documented share of the crop.
"""
import cv2
import numpy as np
import pytest
import torch

from comfyui_personalvideo.training.face import references
from comfyui_personalvideo.training.face.align import ARCFACE_TEMPLATE
from comfyui_personalvideo.training.face.detector import FaceDetector

import face_fixtures as ff

def hog_faces(bgr):
    """[(x0, y0, x1, y1)] of the frontal faces dlib's HOG detector finds, largest first."""
    import dlib

    grey = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    scale = 1.0 if max(grey.shape) <= 600 else 600 / max(grey.shape)   # HOG is slow on huge photos
    small = grey if scale == 1.0 else cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    found = dlib.get_frontal_face_detector()(small, 1)
    boxes = [tuple(int(round(v / scale)) for v in (r.left(), r.top(), r.right(), r.bottom())) for r in found]
    return sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)


class HogDetector:
    """SCRFD's detect() contract over dlib's HOG detector."""

    def detect(self, bgr, input_size=None, max_num=0):
        boxes = hog_faces(bgr)
        if not boxes:
            return np.zeros((0, 5)), None
        out, kpss = [], []
        for x0, y0, x1, y1 in boxes:
            out.append([x0, y0, x1, y1, 0.9])
            kpss.append(np.asarray(ARCFACE_TEMPLATE) / 112.0 * [x1 - x0, y1 - y0] + [x0, y0])
        return np.asarray(out, np.float64), np.asarray(kpss, np.float64)


def _image(bgr):
    return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1]).astype(np.float32) / 255.0)[None]


@pytest.fixture(scope="module")
def photos():
    hopper, astronaut = ff.photo_bgr("grace_hopper"), ff.photo_bgr("astronaut")
    big = cv2.resize(hopper, None, fx=4.5, fy=4.5, interpolation=cv2.INTER_CUBIC)
    return {"portrait": hopper, "square": astronaut, "landscape": astronaut[:300], "upscaled": big}


def _bgr(crop):
    return np.ascontiguousarray((crop.numpy()[..., ::-1] * 255).round().astype(np.uint8))


@pytest.mark.parametrize("width,height", [(512, 512), (384, 256), (256, 384)])
def test_photos_of_any_size_become_face_centred_crops_at_the_training_resolution(photos, width, height):
    assert max(photos["upscaled"].shape[:2]) > 2000
    images = [_image(p) for p in photos.values()]   # an image list: four sizes, no common batch possible
    detector = FaceDetector(HogDetector())
    refs = references.detect_references(detector, images)
    assert len(refs.labels) == 4 and not refs.skipped
    crops = references.training_crops(images, refs, width, height)
    assert crops.images.shape == (4, height, width, 3) and crops.labels == refs.labels
    for name, crop, box in zip(photos, crops.images, crops.boxes):
        faces = hog_faces(_bgr(crop))
        assert faces, f"{name}: no face in the crop"
        x0, y0, x1, y1 = faces[0]
        short = min(width, height)
        left, top, right, bottom = box
        photo_h, photo_w = photos[name].shape[:2]
        # centred, except towards a photo edge the crop already touches (the photo allows no more)
        offset = np.array([(x0 + x1) / 2 - width / 2, (y0 + y1) / 2 - height / 2])
        at_edge = [(left <= 0.5) if offset[0] < 0 else (right >= photo_w - 0.5),
                   (top <= 0.5) if offset[1] < 0 else (bottom >= photo_h - 0.5)]
        for axis in (0, 1):
            assert abs(offset[axis]) < 0.15 * short or at_edge[axis], (name, offset, box)
        share = max(x1 - x0, y1 - y0) / short
        assert 0.3 < share < 0.75, (name, share)   # FACE_SHARE (0.4) of the crop, more where the photo is small
        assert abs((right - left) / (bottom - top) - width / height) < 1e-6   # the training shape, not squashed


def test_an_upscaled_photo_gives_the_same_crop_as_the_original(photos):
    detector = FaceDetector(HogDetector())
    images = [_image(photos["portrait"]), _image(photos["upscaled"])]
    refs = references.detect_references(detector, images)
    crops = references.training_crops(images, refs, 256, 256).images
    assert float((crops[0] - crops[1]).abs().mean()) < 0.04


def test_crop_box_keeps_the_margin_and_stays_inside_the_photo():
    # a face in the middle of a big photo: 2.5 face boxes across, centred on the face
    box = references.crop_box((900, 900, 1100, 1100), (2000, 2000), (512, 512))
    assert box == pytest.approx((750, 750, 1250, 1250))
    # near the top-left corner: shifted inside, same size
    box = references.crop_box((0, 10, 100, 110), (2000, 2000), (512, 256))
    assert box == pytest.approx((0, 0, 500, 250))
    # the face fills a small photo: the largest crop of the training shape that fits
    box = references.crop_box((10, 10, 90, 90), (100, 120), (512, 512))
    assert box[2] - box[0] == pytest.approx(100) and box[3] - box[1] == pytest.approx(100)
    assert 0 <= box[1] and box[3] <= 120
