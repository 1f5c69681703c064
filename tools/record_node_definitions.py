"""Record third-party packs' node definitions from their real code.

Starts a throwaway headless ComfyUI (a modern checkout, ``--base-directory`` in a temporary
folder) with the given packs linked into its custom_nodes, reads ``/object_info`` and writes,
for each pack, the entries of the node types our example workflows use:

    tests/data/node_definitions/<pack folder>.json
    {"pack": ..., "repository": "owner/name", "commit": "<sha>", "host": "ComfyUI <sha>",
     "nodes": {"<node type>": <its /object_info entry>, ...}}

The tests check the workflows against these files where a pack is not installed, and
generate stand-in nodes from them (tests/stand_in_nodes). Run it with a Python that has the
packs' requirements (a scratch venv, not the project's environment):

    python -m tools.record_node_definitions --comfyui /path/to/ComfyUI \\
        --pack Kosinkadink/ComfyUI-AnimateDiff-Evolved=/path/to/ADE \\
        --pack Kosinkadink/ComfyUI-VideoHelperSuite=/path/to/VHS \\
        --pack Fannovel16/comfyui_controlnet_aux=/path/to/controlnet_aux
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .comfy_process import ComfyProcess
from .workflow_specs import PACKS

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_DIR / "tests" / "data" / "node_definitions"
FILE_LIST_NOTE = ("Recorded from the pack's code by tools/record_node_definitions.py. Lists of model or input "
                  "files (e.g. model_name, video) are what the recording machine's folders held.")


def git_commit(path: Path) -> str:
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def workflow_node_types(folder: Path = REPO_DIR / "workflows") -> set:
    """Every node type the UI workflows in ``folder`` use."""
    types = set()
    for path in sorted(folder.glob("*.json")):
        types |= {node["type"] for node in json.loads(path.read_text())["nodes"]}
    return types


def pack_folder(repository: str) -> str:
    return repository.split("/")[-1]


def record(comfyui: Path, packs: dict, wanted: set | None, python: str | None = None) -> dict:
    """``packs``: {"owner/name": checkout path}. Returns {pack folder: record}."""
    with tempfile.TemporaryDirectory(prefix="pv-record-") as base:
        custom = Path(base) / "custom_nodes"
        custom.mkdir()
        for repository, path in packs.items():
            (custom / pack_folder(repository)).symlink_to(Path(path).resolve(), target_is_directory=True)
        with ComfyProcess(comfyui, base_dir=base, python=python,
                          log_path=Path(base) / "comfyui.log") as comfy:
            info = comfy.get("/object_info")
            log = comfy.log(20000)
    host = f"ComfyUI {git_commit(comfyui)}"
    records = {}
    for repository, path in packs.items():
        folder = pack_folder(repository)
        module = f"custom_nodes.{folder}"
        nodes = {name: entry for name, entry in sorted(info.items()) if entry.get("python_module") == module}
        if not nodes:
            raise RuntimeError(f"{repository} registered no nodes (import failed?). Host log:\n{log}")
        if wanted is not None:
            nodes = {n: e for n, e in nodes.items() if n in wanted}
        records[folder] = {"pack": folder, "repository": repository, "commit": git_commit(Path(path)),
                           "host": host, "note": FILE_LIST_NOTE, "nodes": nodes}
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui", required=True, type=Path, help="a modern ComfyUI checkout (used read-only)")
    parser.add_argument("--pack", action="append", required=True, metavar="OWNER/NAME=PATH",
                        help="a pack's repository name and its checkout")
    parser.add_argument("--python", default=None, help="Python that runs ComfyUI (default: this one)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--all", action="store_true", help="record every node of the packs, not only the "
                        "ones the workflows use")
    args = parser.parse_args(argv)
    packs = dict(p.split("=", 1) for p in args.pack)
    wanted = None if args.all else workflow_node_types()
    records = record(args.comfyui, packs, wanted, args.python)
    args.out.mkdir(parents=True, exist_ok=True)
    used = wanted or set()
    for folder, rec in records.items():
        path = args.out / f"{folder}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
        print(f"{path}: {len(rec['nodes'])} node(s) from {rec['repository']} @ {rec['commit'][:12]}")
    missing = sorted(t for folder, types in PACKS.items() if folder in records
                     for t in types & used if t not in records[folder]["nodes"])
    if missing:
        print(f"error: the workflows use node types the packs did not register: {missing}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
