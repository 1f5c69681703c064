"""Does this pack load in this ComfyUI, and from where."""
from __future__ import annotations

import os
import re

from .context import loaded_node_ids
from .model_files import folders, listdir
from .result import fail, ok, warn

NAME = "PersonalVideo pack"


def pyproject_version(folder: str) -> str:
    """The ``version`` of a pack's pyproject.toml ("unknown" when there is none)."""
    try:
        with open(os.path.join(folder, "pyproject.toml"), encoding="utf-8") as f:
            m = re.search(r"(?m)^version\s*=\s*[\"']([^\"']+)", f.read())
        return m.group(1) if m else "unknown"
    except OSError:
        return "unknown"


def check_pack(ctx):
    version = pyproject_version(ctx.pack_dir)
    details = {"version": version, "folder": ctx.pack_dir}
    if ctx.in_server:
        ours = sorted(n for n in loaded_node_ids() if n.startswith("PV_"))
        return ok(NAME, f"{version}, loaded by this ComfyUI ({len(ours)} nodes).", nodes=ours, **details)
    if ctx.pack_import_error:
        return fail(NAME, f"{version}: importing it the way ComfyUI does fails, so ComfyUI shows IMPORT FAILED "
                          f"and none of its nodes: {ctx.pack_import_error}",
                    "Install its requirements with the Python that runs ComfyUI: "
                    f"python -m pip install -r {os.path.join(ctx.pack_dir, 'requirements.txt')}", **details)
    # the command registers the custom_nodes folder where a host lacks it (doctor/command.py: setup_comfyui)
    dirs = [os.path.realpath(d) for d in folders("custom_nodes")]
    me = os.path.realpath(ctx.pack_dir)
    installed = [d for d in dirs if any(os.path.realpath(os.path.join(d, e)) == me for e in listdir(d))]
    if not installed:
        return warn(NAME, f"{version} imports, but this copy ({ctx.pack_dir}) is not in this ComfyUI's "
                          f"custom_nodes folder ({', '.join(dirs)}), so ComfyUI does not load it.",
                    "Move or clone the pack into ComfyUI/custom_nodes and restart ComfyUI.", **details)
    return ok(NAME, f"{version}, imports as ComfyUI loads it ({ctx.pack_node_count or 0} nodes).", **details)
