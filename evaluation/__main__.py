"""Entry point: ``python -m evaluation score ...`` from the pack folder, or
``python custom_nodes/ComfyUI-PersonalVideo/evaluation score ...`` (see command.py).

Makes the pack folder importable as a package without running its ``__init__`` (which registers nodes and
needs ComfyUI), so the relative imports of this package work outside ComfyUI.
"""
import importlib
import os
import sys
import types

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
PACK_DIR = os.path.dirname(PACKAGE_DIR)
ALIAS = "personalvideo_evaluation_pack"


def _command():
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != PACKAGE_DIR]
    if ALIAS not in sys.modules:
        package = types.ModuleType(ALIAS)
        package.__path__ = [PACK_DIR]
        sys.modules[ALIAS] = package
    return importlib.import_module(ALIAS + ".evaluation.command")


if __name__ == "__main__":
    sys.exit(_command().main(sys.argv[1:]))
