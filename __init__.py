"""ComfyUI-PersonalVideo: identity-faithful AnimateDiff videos from a few photos.

Node registration only; the nodes live in ``nodes/``, the adapter in ``sia/``, the
trainer in ``training/`` and the diffusers engine in ``engine/``.
"""
import sys as _sys

WEB_DIRECTORY = "./web"  # shows the doctor's report on its node

# Nodes are registered only when ComfyUI imports the pack: as a package, with folder_paths imported.
# The engine (the `personalvideo` command) imports the pack as a package outside ComfyUI, and pytest
# imports this file on its own when the checkout's folder name is no module name
# (e.g. "ComfyUI-PersonalVideo"): nothing to register then.
if __package__ and "folder_paths" in _sys.modules:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
