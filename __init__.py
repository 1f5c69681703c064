"""ComfyUI-PersonalVideo: identity-faithful AnimateDiff videos from a few photos.

Node registration only; the nodes live in ``nodes/``, the adapter in ``sia/`` and
the trainer in ``training/``.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"  # shows the doctor's report on its node

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
