"""The face stack (detector + ArcFace encoder) of the nodes, found in a folder instead of ComfyUI's model folders.

A pack is looked for where ComfyUI keeps it, ``<insightface folder>/models/<pack>/``
(``<ComfyUI>/models/insightface`` with a ComfyUI root), or given as the folder holding
the two .onnx files; insightface then loads it as the nodes do (never downloading).
insightface's pretrained models are licensed for non-commercial research use only.
"""
from __future__ import annotations

import os

from ..training.face.model_paths import LICENSE_NOTE, MODEL_PACKS, ModelPackFiles
from .errors import EngineError


def find_face_pack(folder: str, pack: str = "antelopev2") -> ModelPackFiles:
    if pack not in MODEL_PACKS:
        raise EngineError(f"unknown face model pack {pack!r}; choose one of {', '.join(MODEL_PACKS)}.")
    det, rec = MODEL_PACKS[pack]
    looked = []
    for candidate, base in ((folder, os.path.dirname(os.path.dirname(folder))),
                            (os.path.join(folder, "models", pack), folder),
                            (os.path.join(folder, "models", pack, pack), folder)):
        looked.append(candidate)
        if os.path.isfile(os.path.join(candidate, det)) and os.path.isfile(os.path.join(candidate, rec)):
            return ModelPackFiles(pack, candidate, os.path.join(candidate, det), os.path.join(candidate, rec),
                                  nested=candidate.endswith(os.path.join(pack, pack)), base=base)
    raise EngineError(f"the face model pack {pack!r} ({det} and {rec}) was not found in {', '.join(looked)}. Give "
                      f"--faces with the insightface folder (ComfyUI/models/insightface) or the pack folder; "
                      f"nothing is downloaded ({LICENSE_NOTE}).")


def load_face_stack(folder: str, pack: str = "antelopev2", provider: str = "CPU", cache_dir: str | None = None):
    """(FaceStack, PyTorch ArcFace encoder) for the pack in ``folder``; the encoder cached in ``cache_dir``."""
    from ..training.face.analysis import load_face_stack as stack_of, open_face_analysis

    files = find_face_pack(folder, pack)
    stack = stack_of(open_face_analysis(files, provider))
    cache = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "personalvideo", "encoders")
    os.makedirs(cache, exist_ok=True)
    return stack, stack.encoder(cache_dir=cache)
