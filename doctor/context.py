"""What the checks are run against: a ComfyUI whose folder_paths is set up.

The node runs the checks inside a running ComfyUI; the command sets up
folder_paths from a ComfyUI root first (see :mod:`.command`).  Checks leave
what later checks need in ``facts`` (e.g. where antelopev2 was found).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class DoctorContext:
    comfyui_root: str
    in_server: bool = False              # True inside a running ComfyUI (the node)
    convert_encoder: bool = True         # convert (and cache) the face encoder when no cache exists
    pack_dir: str = ""                   # this pack's folder
    pack_import_error: str | None = None  # the command: why the pack failed to import as ComfyUI would
    pack_node_count: int | None = None
    facts: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.pack_dir:
            self.pack_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loaded_node_ids() -> set:
    """Node ids registered in this process (all packs ComfyUI loaded); empty outside a server."""
    import sys

    nodes = sys.modules.get("nodes")
    return set(getattr(nodes, "NODE_CLASS_MAPPINGS", {}) or {})
