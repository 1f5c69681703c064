"""Model folders the pack adds to ComfyUI's folder_paths.

``models/sia`` holds Spatial Identity Adapters; ``models/insightface`` is the
folder face packs (PuLID, InstantID, IPAdapter FaceID) already use.  Entries a
user gave in extra_model_paths.yaml for the same names are kept.
"""
import os

import folder_paths

SIA_EXTENSIONS = {".safetensors"}


def _register(name: str, extensions: set) -> None:
    default = os.path.join(folder_paths.models_dir, name)
    known = folder_paths.folder_names_and_paths.get(name)
    if known is None:
        folder_paths.folder_names_and_paths[name] = ([default], set(extensions))
        return
    paths, exts = known
    if default not in paths:
        paths.append(default)
    folder_paths.folder_names_and_paths[name] = (paths, set(exts) | set(extensions))


def register_model_folders() -> None:
    _register("sia", SIA_EXTENSIONS)
    _register("insightface", {".onnx"})
