"""Where the insightface model packs live: ComfyUI's ``insightface`` model folders.

The folders come from ``folder_paths.get_folder_paths("insightface")`` (our
``nodes/model_folders.py`` registers ``models/insightface``; extra_model_paths.yaml
entries are honoured).  A pack is expected where PuLID/InstantID/IPAdapter FaceID
expect it: ``<insightface folder>/models/<pack>/``.  The common mistake of a
nested ``<pack>/<pack>/`` folder (unzipping into a folder of the same name) is
tolerated with a notice printed once.  Nothing is ever downloaded.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from .errors import FaceStackError, ModelPackMissingError

log = logging.getLogger(__name__)

# pack name -> (detector file, recogniser file)
MODEL_PACKS = {
    "antelopev2": ("scrfd_10g_bnkps.onnx", "glintr100.onnx"),
    "buffalo_l": ("det_10g.onnx", "w600k_r50.onnx"),
}
LICENSE_NOTE = "insightface's pretrained models are licensed for non-commercial research use only"
# where people get each pack: insightface publishes buffalo_l as a release download, but no download of antelopev2,
# so the face packs built on it (PuLID, InstantID) point to a copy of its zip
SOURCES = {
    "antelopev2": "insightface offers no download of antelopev2; get antelopev2.zip where the PuLID and InstantID "
                  "packs point (the Hugging Face repository MonsterMMORPG/tools: "
                  "https://huggingface.co/MonsterMMORPG/tools/tree/main)",
    "buffalo_l": "get buffalo_l.zip from insightface's v0.7 release "
                 "(https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip)",
}

_nested_noticed: set = set()


@dataclass
class ModelPackFiles:
    name: str
    folder: str      # the folder holding the two files
    detector: str
    recognizer: str
    nested: bool
    base: str = ""   # the insightface folder it was found in (``<base>/models/<name>``)


def insightface_folders() -> list:
    import folder_paths

    try:
        return list(folder_paths.get_folder_paths("insightface"))
    except KeyError:
        return [os.path.join(folder_paths.models_dir, "insightface")]


def _candidates(name: str) -> list:
    out = []
    for base in insightface_folders():
        pack = os.path.join(base, "models", name)
        out.append((pack, False, base))
        out.append((os.path.join(pack, name), True, base))
    return out


def find_model_pack(name: str = "antelopev2") -> ModelPackFiles:
    """Locate a pack's detector and recogniser, or raise a :class:`FaceStackError`
    listing every folder looked in and the file names expected there."""
    if name not in MODEL_PACKS:
        raise FaceStackError(f"unknown face model pack {name!r}; choose one of {', '.join(MODEL_PACKS)}")
    det_name, rec_name = MODEL_PACKS[name]
    looked, candidates = [], _candidates(name)
    for folder, nested, base in candidates:
        det, rec = os.path.join(folder, det_name), os.path.join(folder, rec_name)
        has_det, has_rec = os.path.isfile(det), os.path.isfile(rec)
        if has_det and has_rec:
            if nested and folder not in _nested_noticed:
                _nested_noticed.add(folder)
                message = (f"PersonalVideo: using the nested folder {folder}. Other face packs (PuLID, "
                           f"InstantID) expect the files directly in {os.path.dirname(folder)}: move them "
                           "up one level when convenient.")
                log.warning(message)
                print(message)
            return ModelPackFiles(name, folder, det, rec, nested, base)
        state = "missing" if not os.path.isdir(folder) else (
            "has " + ", ".join(n for n, ok in ((det_name, has_det), (rec_name, has_rec)) if ok) + " only"
            if (has_det or has_rec) else "folder exists but holds neither file")
        looked.append(f"  {folder}  ({state})")
    first = candidates[0][0] if candidates else f"ComfyUI/models/insightface/models/{name}"
    raise ModelPackMissingError(
        f"the insightface model pack {name!r} was not found. Expected the files {det_name} and {rec_name} in one "
        "of these folders:\n" + "\n".join(looked),
        f"Put the {name} files in {first} (the folder PuLID and InstantID use; unzip so that the .onnx files "
        f"sit directly in it): {SOURCES[name]}. This pack never downloads models; {LICENSE_NOTE}.",
        expected=first,
    )


def encoder_cache_dir() -> str:
    """A writable folder for converted recognisers (safetensors), created on demand."""
    import folder_paths

    candidates = [os.path.join(base, "personalvideo_cache") for base in insightface_folders()]
    user_dir = getattr(folder_paths, "user_directory", None)  # no get_user_directory() in 2024 ComfyUI
    if getattr(folder_paths, "get_user_directory", None):
        user_dir = folder_paths.get_user_directory()
    if user_dir:
        candidates.append(os.path.join(user_dir, "personalvideo", "cache"))
    for folder in candidates:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise FaceStackError("no writable folder for the face encoder cache; tried: " + ", ".join(candidates))
