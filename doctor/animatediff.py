"""AnimateDiff-Evolved (installed, enabled, loaded, which version) and the AnimateLCM motion model."""
from __future__ import annotations

import os

from .context import loaded_node_ids
from .model_files import DamagedFile, check_intact, find_files, folders, listdir
from .pack import pyproject_version
from .result import ok, warn

NAME = "AnimateDiff-Evolved"
MOTION = "motion model"
ADE_NODE = "ADE_AnimateDiffLoaderGen1"
TESTED_VERSION = "1.5.6"
MOTION_MODEL = "AnimateLCM_sd15_t2v.ckpt"   # what the example workflows load
INSTALL = ("Install ComfyUI-AnimateDiff-Evolved with ComfyUI-Manager, or: cd custom_nodes && git clone "
           "https://github.com/Kosinkadink/ComfyUI-AnimateDiff-Evolved, then restart ComfyUI.")


def _is_ade(name: str) -> bool:
    return "animatediff-evolved" in name.lower().replace("_", "-")


def find_ade() -> tuple:
    """(enabled folders, folders ComfyUI-Manager disabled)."""
    enabled, disabled = [], []
    for base in folders("custom_nodes"):
        for entry in listdir(base):
            path = os.path.join(base, entry)
            if not _is_ade(entry) or not os.path.isdir(path):
                continue
            (disabled if entry.endswith(".disabled") else enabled).append(path)
        for entry in listdir(os.path.join(base, ".disabled")):
            if _is_ade(entry):
                disabled.append(os.path.join(base, ".disabled", entry))
    return enabled, disabled


def check_animatediff(ctx):
    enabled, disabled = find_ade()
    details = {"folders": enabled, "disabled": disabled}
    if not enabled:
        if disabled:
            return warn(NAME, f"installed but disabled ({disabled[0]}): the video workflows need it; without it "
                              "only image-only training and generation work.",
                        "Enable it in ComfyUI-Manager and restart ComfyUI.", **details)
        return warn(NAME, "not installed: PersonalVideo's video workflows (and training on videos) need it; "
                          "without it only image-only training and generation work.", INSTALL, **details)
    folder = enabled[0]
    version = pyproject_version(folder)
    ctx.facts["ade_folder"] = folder
    details.update(version=version)
    if len(enabled) > 1:
        return warn(NAME, f"installed twice ({', '.join(enabled)}); the copies fight over the same node names.",
                    "Delete all but one copy and restart ComfyUI.", **details)
    if ctx.in_server and ADE_NODE not in loaded_node_ids():
        return warn(NAME, f"v{version} is in {folder} but ComfyUI did not load it (IMPORT FAILED at start-up).",
                    "Read the AnimateDiff-Evolved error in ComfyUI's start-up log; updating it (and ComfyUI) "
                    "usually fixes it.", **details)
    tested = "the version the pack is tested with" if version == TESTED_VERSION else \
        f"the pack is tested with v{TESTED_VERSION}"
    loaded = "loaded" if ctx.in_server else "found (ComfyUI loads it at start-up)"
    return ok(NAME, f"v{version} {loaded} in {folder} ({tested}).", **details)


def motion_model_folders(ctx) -> list:
    import folder_paths

    extra = [os.path.join(folder_paths.models_dir, "animatediff_models")]
    if ctx.facts.get("ade_folder"):
        extra.insert(0, os.path.join(ctx.facts["ade_folder"], "models"))
    return folders("animatediff_models", extra)


def check_motion_model(ctx):
    dirs = motion_model_folders(ctx)
    wanted = MOTION_MODEL.lower()
    # one walk of the folders: the wanted file is itself one of the model files
    others = find_files(dirs, lambda f: f.lower().endswith((".ckpt", ".safetensors", ".pth", ".pt")))
    found = [p for p in others if os.path.basename(p).lower() == wanted]
    details = {"folders": dirs, "found": found}
    if not found:
        also = f" (found other motion models: {', '.join(os.path.basename(p) for p in others[:5])})" if others else ""
        where = dirs[0] if dirs else "ComfyUI/models/animatediff_models"
        return warn(MOTION, f"{MOTION_MODEL} is not in {', '.join(dirs)}{also}. The example workflows sample with "
                            "AnimateLCM (a few LCM steps), and training generates its videos that way.",
                    f"Download {MOTION_MODEL} (wangfuyun/AnimateLCM on Hugging Face) into {where}.", **details)
    try:
        check_intact(found[0])
    except DamagedFile as exc:
        return warn(MOTION, f"{found[0]} is damaged ({exc}): the workflows that load it fail.",
                    f"Delete it and download {MOTION_MODEL} again.", **details)
    return ok(MOTION, f"{found[0]} ({os.path.getsize(found[0]) / 1e9:.2f} GB).", **details)
