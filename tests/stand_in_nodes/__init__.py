"""TEST DOUBLE: stand-in nodes for third-party packs the test host lacks.

Generated from the node definitions recorded from the packs' real code
(tests/data/node_definitions/<pack>.json, written by tools/record_node_definitions.py), so the
host's own /prompt validator checks whole example workflows: node types, input names, socket
types, combo values and number ranges exactly as the real pack declares them. They do not run:
executing one raises an error that names the pack to install.

Loaded only by the test server (tests/comfy_server.py, ``ComfyServer(stand_ins=True)``), and only
for the packs named in the PV_STAND_IN_PACKS environment variable (comma-separated folder names):
packs the host has load for real instead.
"""
import json
import os
from pathlib import Path

import folder_paths

DEFINITIONS_DIR = Path(__file__).resolve().parent.parent / "data" / "node_definitions"
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".gif", ".mov")

# combo inputs whose choices are files on the user's machine: listed from this host's folders
FILE_INPUTS = {
    ("ADE_AnimateDiffLoaderGen1", "model_name"): "animatediff_models",
    ("VHS_LoadVideo", "video"): "input videos",
}


def _file_choices(kind):
    if kind == "input videos":
        folder = folder_paths.get_input_directory()
        return sorted(f for f in os.listdir(folder) if f.lower().endswith(VIDEO_EXTENSIONS)) \
            if os.path.isdir(folder) else []
    if kind not in folder_paths.folder_names_and_paths:
        path = os.path.join(folder_paths.models_dir, kind)
        folder_paths.folder_names_and_paths[kind] = ([path], set(folder_paths.supported_pt_extensions))
    return folder_paths.get_filename_list(kind)


def _ordered(entry, group):
    spec = entry["input"].get(group, {})
    order = entry.get("input_order", {}).get(group, list(spec))
    return {name: spec[name] for name in order if name in spec}


def make_node(node_type, entry, record):
    install = f"{record['repository']} (commit {record['commit'][:12]})"

    class StandIn:
        DESCRIPTION = f"Test stand-in for {node_type} of {install}."
        CATEGORY = "test stand-ins/" + entry.get("category", "")
        FUNCTION = "run"
        RETURN_TYPES = tuple(entry["output"])
        RETURN_NAMES = tuple(entry.get("output_name") or entry["output"])
        OUTPUT_NODE = bool(entry.get("output_node"))

        @classmethod
        def INPUT_TYPES(cls):
            types = {}
            for group in ("required", "optional"):
                spec = _ordered(entry, group)
                for name, value in spec.items():
                    kind = FILE_INPUTS.get((node_type, name))
                    if kind:
                        spec[name] = [_file_choices(kind)] + list(value[1:])
                if spec:
                    types[group] = spec
            if entry["input"].get("hidden"):
                types["hidden"] = dict(entry["input"]["hidden"])
            return types

        def run(self, **kwargs):
            raise RuntimeError(f"{node_type} is a test stand-in: install {install} to run it.")

    StandIn.__name__ = f"StandIn_{node_type}"
    return StandIn


NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
WEB_DIRECTORY = "./web"  # the frontend side of the VideoHelperSuite stand-ins (for the browser check)
for _pack in filter(None, os.environ.get("PV_STAND_IN_PACKS", "").split(",")):
    _record = json.loads((DEFINITIONS_DIR / f"{_pack}.json").read_text())
    for _type, _entry in _record["nodes"].items():
        NODE_CLASS_MAPPINGS[_type] = make_node(_type, _entry, _record)
        NODE_DISPLAY_NAME_MAPPINGS[_type] = _entry.get("display_name", _type)
