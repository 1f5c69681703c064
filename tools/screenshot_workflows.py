"""Screenshots of the example workflows in the real ComfyUI frontend (the README's and docs' images).

    COMFYUI_ROOT=/path/to/ComfyUI "$(bash scripts/env.sh)/bin/python" -m tools.screenshot_workflows
    ... -m tools.screenshot_workflows --out /tmp/shots 02_generate_with_identity

Starts the host the tests use (tests/host.py: this pack linked into a scratch custom_nodes; packs
of the checkout's custom_nodes linked too; the test stand-ins for third-party packs it lacks),
puts a photo and a video stand-in under the names the workflows use into its input folder, opens
its own frontend in headless Chromium (Debian's chromium + chromium-driver) at a fixed page size,
loads each workflow like the file-open path does, fits the whole graph in view and writes
``docs/images/<workflow>.png`` as a small palette PNG, and the thumbnail the frontend's Templates browser
shows for it, ``workflows/<workflow>.jpg`` (the graph fitted into a square page, 512x512 JPEG: ComfyUI
serves a pack's ``<template>.jpg`` beside ``<template>.json`` as its thumbnail). A workflow that loads with
missing nodes or widget problems is reported and still photographed (the browser test is the check).
Use a modern host (COMFYUI_ROOT): that is the frontend people see.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from .comfy_frontend import ComfyFrontend, missing_browser
from .workflow_inputs import input_files, place_input_files

REPO_DIR = Path(__file__).resolve().parent.parent
WORKFLOWS_DIR = REPO_DIR / "workflows"
DEFAULT_OUT = REPO_DIR / "docs" / "images"

SCREENSHOT_SETTINGS = {
    # no pack-name badges over nodes (stand-ins would be labelled with the test folder's name)
    "Comfy.NodeBadge.NodeSourceBadgeMode": "None",
    "Comfy.NodeBadge.NodeIdBadgeMode": "None",
    "Comfy.Workflow.WorkflowTabsPosition": "Sidebar",  # no row of tabs from the earlier workflows
    "Comfy.Graph.CanvasInfo": False,                   # no render statistics in the corner
    "LiteGraph.Canvas.MinFontSizeForLOD": 0,           # text drawn at any zoom (no blank node boxes)
}


def default_photo() -> Path | None:
    """A portrait that ships with matplotlib (Grace Hopper, public domain), if installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return path if path.exists() else None


def page_height(workflow: dict, width: int, low: int = 900, high: int = 1400) -> int:
    """A page height that suits the graph's shape at ``width`` (tall graphs get a taller page)."""
    boxes = [(*n["pos"], *n["size"]) for n in workflow.get("nodes", []) if "pos" in n and "size" in n]
    boxes += [tuple(g["bounding"]) for g in workflow.get("groups", []) if "bounding" in g]
    if not boxes:
        return low
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return int(min(high, max(low, width * (y1 - y0) / max(x1 - x0, 1) + 160)))


def save_small_png(src: Path, dst: Path, colors: int = 128) -> Path:
    """A palette PNG: the flat colours of the node editor survive; a fraction of the size."""
    from PIL import Image

    dst.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(src).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                                                    dither=Image.Dither.NONE)
    tmp = dst.with_name(dst.name + ".tmp")
    image.save(tmp, format="PNG", optimize=True)
    os.replace(tmp, dst)
    return dst


THUMBNAIL_PAGE, THUMBNAIL_SIZE = 1100, 512


def save_thumbnail(src: Path, dst: Path, size: int = THUMBNAIL_SIZE) -> Path:
    """A square JPEG thumbnail of a square screenshot (written to a temporary file and renamed)."""
    from PIL import Image

    dst.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(src).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    tmp = dst.with_name(dst.name + ".tmp")
    image.save(tmp, format="JPEG", quality=85, optimize=True, progressive=True)
    os.replace(tmp, dst)
    return dst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="workflow names (default: every workflows/*.json)")
    parser.add_argument("--comfyui", help="ComfyUI checkout (default: $COMFYUI_ROOT, else the test host)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--thumbnails", type=Path, default=WORKFLOWS_DIR, help="folder of the Templates thumbnails")
    parser.add_argument("--photo", type=Path, default=None, help="picture used for the workflows' input photo")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=None, help="default: 900 to 1400 px, by the graph's shape")
    args = parser.parse_args(argv)

    reason = missing_browser()
    if reason:
        parser.error(reason)
    paths = sorted(WORKFLOWS_DIR.glob("*.json"))
    if args.names:
        paths = [p for p in paths if p.stem in args.names or p.name in args.names]
        if not paths:
            parser.error(f"no workflow named {args.names} in {WORKFLOWS_DIR}")
    if args.comfyui:
        os.environ["COMFYUI_ROOT"] = str(Path(args.comfyui).resolve())

    sys.path.insert(0, str(REPO_DIR / "tests"))
    import comfy_server  # the tests' host: pack link, stand-ins, scratch folders removed at exit

    server = comfy_server.ComfyServer(stand_ins=True)
    workflows = {p: json.loads(p.read_text()) for p in paths}
    place_input_files(server.input, set().union(*map(input_files, workflows.values())),
                      photo=args.photo or default_photo())
    server.start()
    failed = 0
    try:
        with ComfyFrontend(server.url, args.width, args.height or 1000, settings=SCREENSHOT_SETTINGS) as ui, \
                tempfile.TemporaryDirectory() as tmp:
            print(f"frontend {ui.frontend_version()} at {server.url}")
            for path, workflow in workflows.items():
                ui.resize(args.width, args.height or page_height(workflow, args.width))
                report = ui.load(workflow, path.name)
                issues = report["missing"] + report["problems"] + report["console_errors"]
                if issues:
                    failed += 1
                    print(f"{path.name}: loads with problems:\n  " + "\n  ".join(map(str, issues)))
                shot = ui.screenshot(Path(tmp) / f"{path.stem}.png")
                out = save_small_png(shot, args.out / f"{path.stem}.png")
                ui.resize(THUMBNAIL_PAGE, THUMBNAIL_PAGE)
                square = ui.screenshot(Path(tmp) / f"{path.stem}-square.png")
                thumb = save_thumbnail(square, args.thumbnails / f"{path.stem}.jpg")
                print(f"{out}  ({out.stat().st_size // 1024} KiB); {thumb}  ({thumb.stat().st_size // 1024} KiB)")
    finally:
        server.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
