"""The model files the example workflows load besides the motion model: an SD1.5 checkpoint,
the AnimateLCM LoRA and the OpenPose ControlNet."""
from __future__ import annotations

import os

from .model_files import PICKLE_EXTS, DamagedFile, check_intact, checkpoint_family, find_files, folders
from .result import fail, ok, warn

CHECKPOINT = "SD1.5 checkpoint"
LCM_LORA = "AnimateLCM LoRA"
OPENPOSE = "OpenPose ControlNet"
EXAMPLE_CHECKPOINT = "realisticVisionV60B1_v51VAE.safetensors"  # what the example workflows' loader names
LCM_LORA_FILE = "AnimateLCM_sd15_t2v_lora.safetensors"
OPENPOSE_STEM = "control_v11p_sd15_openpose"
MODEL_EXTS = (".safetensors", ".sft") + PICKLE_EXTS
SHOWN = 4


def _names(paths) -> str:
    names = [os.path.basename(p) for p in paths]
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def check_checkpoint(ctx):
    dirs = folders("checkpoints")
    files = find_files(dirs, lambda f: f.lower().endswith(MODEL_EXTS))
    families, damaged, unread = {}, {}, []
    for path in files:
        try:
            header = check_intact(path)
        except (DamagedFile, OSError) as exc:
            damaged[path] = str(exc)
            continue
        if header is None:
            unread.append(path)
        else:
            families.setdefault(checkpoint_family(header), []).append(path)
    sd15 = families.get("SD1.5", [])
    details = {"folders": dirs, "sd15": sd15, "damaged": damaged, "not_inspected": unread,
               "other_families": {k: v for k, v in families.items() if k != "SD1.5"}}
    bad = "; ".join(f"{os.path.basename(p)} is damaged ({why})" for p, why in damaged.items())
    if sd15:
        text = f"{len(sd15)} SD1.5 checkpoint(s): {_names(sd15)}."
        if not any(os.path.basename(p) == EXAMPLE_CHECKPOINT for p in sd15):
            text += (f" The example workflows name {EXAMPLE_CHECKPOINT}: pick one of yours in their "
                     "Load Checkpoint node.")
        if bad:
            return warn(CHECKPOINT, f"{text} But {bad}.", "Delete the damaged file(s) and download them again.",
                        **details)
        return ok(CHECKPOINT, text, **details)
    where = dirs[0] if dirs else "ComfyUI/models/checkpoints"
    others = ", ".join(f"{k}: {_names(v)}" for k, v in families.items())
    if unread:
        return warn(CHECKPOINT, f"no .safetensors SD1.5 checkpoint; {_names(unread)} may be one (pickle files are "
                                "not opened to check)." + (f" Other families: {others}." if others else ""),
                    "Fine if one of them is SD1.5; the .safetensors version of the checkpoint can be checked.",
                    **details)
    found = (f" Found only other families ({others}); PersonalVideo trains on SD1.5-family models." if others
             else "")
    return fail(CHECKPOINT, f"no usable SD1.5 checkpoint in {', '.join(dirs) or where}.{found}"
                + (f" {bad}." if bad else ""),
                f"Put an SD1.5-family checkpoint (e.g. Realistic Vision, DreamShaper 8, SD 1.5) in {where}.",
                **details)


def _named_file(kind, name, pick, label, purpose, download):
    dirs = folders(kind)
    found = find_files(dirs, pick)
    details = {"folders": dirs, "found": found}
    where = dirs[0] if dirs else f"ComfyUI/models/{kind}"
    if not found:
        return warn(label, f"{name} is not in {where}: {purpose}", f"Download {download} into {where}.", **details)
    try:
        check_intact(found[0])
    except (DamagedFile, OSError) as exc:
        return warn(label, f"{found[0]} is damaged ({exc}): the workflows that load it fail.",
                    f"Delete it and download {download} again.", **details)
    return ok(label, f"{found[0]}.", **details)


def check_lcm_lora(ctx):
    return _named_file("loras", LCM_LORA_FILE, lambda f: f.lower() == LCM_LORA_FILE.lower(), LCM_LORA,
                       "the example workflows load it with the AnimateLCM motion model; without it 4-step "
                       "sampling gives blurred frames (and training then finds no faces).",
                       f"{LCM_LORA_FILE} (wangfuyun/AnimateLCM on Hugging Face)")


def check_openpose(ctx):
    return _named_file("controlnet", OPENPOSE_STEM,
                       lambda f: f.lower().startswith(OPENPOSE_STEM) and f.lower().endswith(MODEL_EXTS), OPENPOSE,
                       "only the pose-guided generation workflow needs it.",
                       f"{OPENPOSE_STEM}.pth (lllyasviel/ControlNet-v1-1 on Hugging Face; an fp16 .safetensors "
                       "version works too)")
