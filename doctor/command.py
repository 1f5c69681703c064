"""The doctor as a command, run with ComfyUI's own Python from the ComfyUI folder:

    python custom_nodes/ComfyUI-PersonalVideo/doctor            # the report, exit code 1 if training is blocked
    python custom_nodes/ComfyUI-PersonalVideo/doctor --json     # the same as JSON
    python custom_nodes/ComfyUI-PersonalVideo/doctor --base-directory D --extra-model-paths-config F

Options the doctor does not know are ComfyUI's own (``--base-directory``,
``--extra-model-paths-config``...): pass the ones you start ComfyUI with, so the
doctor looks at the same folders.  It sets up ComfyUI's folder_paths as ComfyUI's
start-up does, imports this pack the way ComfyUI does (to report an import
failure), and runs every check.  ComfyUI's own console output goes to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import traceback

USAGE_ERROR = 2


class SetupError(Exception):
    pass


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python custom_nodes/ComfyUI-PersonalVideo/doctor",
        description="Check a ComfyUI install for PersonalVideo. Other options are passed to ComfyUI's own "
                    "argument parser (e.g. --base-directory, --extra-model-paths-config).")
    parser.add_argument("--comfyui-root", help="the ComfyUI folder (default: the current folder if it is one, "
                                               "else the ComfyUI this pack is installed in)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-convert", action="store_true",
                        help="do not convert the face encoder now when it is not cached yet (it takes about a "
                             "minute; the first training does it otherwise)")
    return parser.parse_known_args(argv)


def _is_comfyui(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "folder_paths.py")) and os.path.isdir(os.path.join(folder, "comfy"))


def find_root(given, pack_dir: str) -> str:
    if given:
        if not _is_comfyui(given):
            raise SetupError(f"--comfyui-root {given} is not a ComfyUI folder (it has no comfy/ and folder_paths.py)")
        return os.path.abspath(given)
    for candidate in (os.getcwd(), os.path.dirname(os.path.dirname(os.path.abspath(pack_dir)))):
        if _is_comfyui(candidate):
            return os.path.abspath(candidate)
    raise SetupError("no ComfyUI found: run this from the ComfyUI folder (the one with main.py), or pass "
                     "--comfyui-root /path/to/ComfyUI")


def _load_extra_paths_old(yaml_path: str) -> None:
    """extra_model_paths.yaml for trees without utils/extra_config.py (their loader lives in main.py)."""
    import folder_paths
    import yaml

    with open(yaml_path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    for conf in config.values():
        if not conf:
            continue
        base = conf.pop("base_path", None)
        conf.pop("is_default", None)
        for kind, value in conf.items():
            for line in str(value).split("\n"):
                if line:
                    path = os.path.join(os.path.expanduser(base), line) if base else line
                    folder_paths.add_model_folder_path(kind, path)


def setup_comfyui(root: str, comfy_args: list, pack_dir: str) -> None:
    """Import ComfyUI's arguments and folder_paths from ``root`` as main.py does, model folders included."""
    import itertools

    sys.path.insert(0, root)
    saved = sys.argv
    sys.argv = [os.path.join(root, "main.py"), *comfy_args]
    try:
        import comfy.options

        comfy.options.enable_args_parsing()
        from comfy.cli_args import args
    finally:
        sys.argv = saved
    import folder_paths

    if os.path.isfile(os.path.join(root, "utils", "extra_config.py")):
        from utils.extra_config import load_extra_path_config
    else:
        load_extra_path_config = _load_extra_paths_old
    configs = [os.path.join(root, "extra_model_paths.yaml")]
    configs += list(itertools.chain(*(getattr(args, "extra_model_paths_config", None) or [])))
    for config in configs:
        if os.path.isfile(config):
            load_extra_path_config(config)
    # the pack's own folders (models/sia, models/insightface), by its own rule, even if the pack fails to import
    spec = importlib.util.spec_from_file_location("personalvideo_model_folders",
                                                  os.path.join(pack_dir, "nodes", "model_folders.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.register_model_folders()
    folder_paths.folder_names_and_paths.setdefault(
        "custom_nodes", ([os.path.join(os.path.dirname(folder_paths.models_dir), "custom_nodes")], set()))


def import_pack(pack_dir: str) -> tuple:
    """(error text or None, number of nodes): import the pack by file path as ComfyUI's loader does."""
    name = os.path.basename(os.path.normpath(pack_dir))
    try:
        spec = importlib.util.spec_from_file_location(name, os.path.join(pack_dir, "__init__.py"),
                                                      submodule_search_locations=[pack_dir])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return None, len(getattr(module, "NODE_CLASS_MAPPINGS", {}))
    except Exception as exc:  # noqa: BLE001  (what ComfyUI would print as IMPORT FAILED)
        sys.modules.pop(name, None)
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
        return f"{type(exc).__name__}: {exc}{where}", 0


def main(argv, pack_dir: str) -> int:
    from .context import DoctorContext
    from .runner import run_checks

    options, comfy_args = parse_args(argv)
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # ComfyUI's prints stay out of the report (and of --json)
        try:
            root = find_root(options.comfyui_root, pack_dir)
            setup_comfyui(root, comfy_args, pack_dir)
        except SetupError as exc:
            print(f"PersonalVideo doctor: {exc}", file=sys.stderr)
            return USAGE_ERROR
        error, count = import_pack(pack_dir)
        ctx = DoctorContext(comfyui_root=root, in_server=False, convert_encoder=not options.no_convert,
                            pack_dir=pack_dir, pack_import_error=error, pack_node_count=count)

        def progress(done, total, result):
            print(f"[doctor {done}/{total}] {result.name}: {result.status}", file=sys.stderr, flush=True)

        report = run_checks(ctx, progress)
    out.write((report.json_text() if options.json else report.text()) + "\n")
    out.flush()
    return report.exit_code
