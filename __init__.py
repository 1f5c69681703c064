"""ComfyUI-PersonalVideo: identity-faithful AnimateDiff videos from a few photos.

Node registration only; the nodes live in ``nodes/``, the adapter in ``sia/`` and
the trainer in ``training/``.
"""
WEB_DIRECTORY = "./web"  # shows the doctor's report on its node

import sys as _sys

# Register the nodes when ComfyUI imports the pack (it has imported folder_paths by then); the engine
# (``engine/``, the `personalvideo` command) imports the pack as a package outside ComfyUI too.
if __package__ and "folder_paths" in _sys.modules:  # ComfyUI imports the pack as a package. pytest imports this file on its own when the
    # checkout's folder name is no valid module name (e.g. "ComfyUI-PersonalVideo"): nothing to register then.
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
