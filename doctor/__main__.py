"""Entry point: ``python custom_nodes/ComfyUI-PersonalVideo/doctor`` (see command.py).

Runs as a plain script, so it makes the pack folder importable as a package
without running the pack's ``__init__`` (which registers the nodes): the doctor
must work, and say why, even when the pack itself does not import.
"""
import importlib
import os
import sys
import types

DOCTOR_DIR = os.path.dirname(os.path.abspath(__file__))
PACK_DIR = os.path.dirname(DOCTOR_DIR)
ALIAS = "personalvideo_doctor_pack"


def _command():
    # this folder is on sys.path[0] when run as a script; its module names (gpu, pack, ...) must not shadow others
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != DOCTOR_DIR]
    if ALIAS not in sys.modules:
        package = types.ModuleType(ALIAS)
        package.__path__ = [PACK_DIR]
        sys.modules[ALIAS] = package
    return importlib.import_module(ALIAS + ".doctor.command")


if __name__ == "__main__":
    sys.exit(_command().main(sys.argv[1:], PACK_DIR))
