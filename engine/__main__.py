"""``python -m engine ...`` from the pack folder (or ``python <pack>/engine ...``): the `personalvideo` command
without installing it.  The pack folder is imported as a package under a fixed name (its ``__init__`` registers
nodes only inside ComfyUI), so the engine's relative imports work."""
import importlib
import importlib.util
import os
import sys

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "comfyui_personalvideo"


def _cli():
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, os.path.join(PACK_DIR, "__init__.py"),
                                                      submodule_search_locations=[PACK_DIR])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return importlib.import_module(PACKAGE + ".engine.cli")


if __name__ == "__main__":
    sys.exit(_cli().main(sys.argv[1:]))
