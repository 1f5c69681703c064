"""Reading a video (animated WEBP/GIF/PNG, mp4/webm/mov/mkv/avi, or a folder of frames) and photos for the
command line, as RGB uint8 arrays."""
from __future__ import annotations

import os

import numpy as np

from .errors import EvaluationError

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
VIDEO_EXT = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")


def read_image_frames(path: str) -> list:
    """All frames of an image file (one for a still, every frame of an animated WEBP/GIF/PNG)."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    if not os.path.isfile(path):
        raise EvaluationError(f"file not found: {path}")
    try:
        with Image.open(path) as im:
            return [np.asarray(frame.convert("RGBA") if frame.mode in ("RGBA", "LA", "P") else frame.convert("RGB"))
                    for frame in ImageSequence.Iterator(im)]
    except (UnidentifiedImageError, OSError) as exc:
        raise EvaluationError(f"{path} is not a readable image ({exc})") from None


def read_photo(path: str) -> np.ndarray:
    return read_image_frames(path)[0]


def _read_video(path: str) -> list:
    import cv2

    cap = cv2.VideoCapture(path)
    frames = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(np.ascontiguousarray(bgr[..., ::-1]))
    finally:
        cap.release()
    if not frames:
        raise EvaluationError(f"{path} holds no frame OpenCV can read (damaged, or a codec this OpenCV lacks): "
                              "save the video as animated WEBP or as a folder of PNG frames")
    return frames


def read_video(path: str) -> list:
    """The frames of ``path``: a video file, an animated image, or a folder of image files (sorted by name)."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXT))
        if not names:
            raise EvaluationError(f"the folder {path} holds no image files ({', '.join(IMAGE_EXT)})")
        return [read_photo(os.path.join(path, n)) for n in names]
    if not os.path.isfile(path):
        raise EvaluationError(f"file not found: {path}")
    if path.lower().endswith(VIDEO_EXT):
        return _read_video(path)
    return read_image_frames(path)


def video_fps(path: str) -> float | None:
    """The frame rate a video file or animated image declares (None for a folder, a still, or none declared)."""
    if os.path.isdir(path) or not os.path.isfile(path):
        return None
    if path.lower().endswith(VIDEO_EXT):
        import cv2

        cap = cv2.VideoCapture(path)
        try:
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        finally:
            cap.release()
        return fps if 0 < fps < 1000 else None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) < 2:
                return None
            im.load()   # WEBP tells a frame's duration once the frame is read
            duration = im.info.get("duration")
    except (UnidentifiedImageError, OSError):
        return None
    return 1000.0 / float(duration) if duration else None   # animated WEBP / GIF / PNG: milliseconds per frame
