"""The main job's video through the engine, where the ComfyUI host has no AnimateDiff-Evolved (the default host).

The host then runs the image-only workflows; this part trains an identity and generates
an animation with the engine (diffusers + peft, ``personalvideo train`` / ``generate``)
through motion modules: a random AnimateLCM-layout motion-module file (SD1.5 widths)
made here, the same random SD1.5 checkpoint and face pack the host used, in child
processes that import no ComfyUI.  The report says which parts ran where.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .comfy_host import PACK_DIR

IDENTITY = "pv_main_job_engine"
MOTION_FILE = "pv_engine_random_AnimateLCM_sd15.safetensors"
ANIMATION = "engine_animation.webp"
WHERE = ("ComfyUI (the default host, no AnimateDiff-Evolved) ran the image-only train and generate workflows; the "
         "engine (diffusers + peft, no ComfyUI imported, child processes) trained a second identity through the "
         "motion modules and generated the animation with them.")


def save_random_motion_module(path: str, seed: int = 11) -> str:
    """An AnimateLCM-layout motion-module file at SD1.5 widths with random weights (output projections
    included: diffusers starts them at zero), written by the engine in the AnimateDiff file layout."""
    import importlib
    import importlib.util

    spec = importlib.util.spec_from_file_location("pv_engine_main", os.path.join(PACK_DIR, "engine", "__main__.py"))
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    engine = launcher._cli().__name__.rsplit(".", 1)[0]
    models = importlib.import_module(engine + ".models")
    shipped = importlib.import_module(engine + ".shipped_configs")
    import torch
    from diffusers import MotionAdapter

    if os.path.exists(path):
        return path
    torch.manual_seed(seed)
    adapter = MotionAdapter.from_config(shipped.shipped_config("animatelcm_motion"))
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if name.endswith("proj_out.weight"):
                torch.nn.init.normal_(p, std=0.02)
    return models.save_motion_module(adapter.to(torch.float16), path)


def _run(cmd, log, what: str):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    code = subprocess.call(cmd, cwd=PACK_DIR, stdout=log, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        raise RuntimeError(f"the engine's {what} failed (exit code {code}); see {log.name}")


def engine_video(run, root: Path, base: Path) -> None:
    """Train and generate through the engine; fills ``run.files``/``run.workflows`` (called by the main job).
    A failure here is reported (``workflows.engine.error``, the console) without undoing the ComfyUI part."""
    try:
        _engine_video(run, root, base)
    except Exception as exc:  # noqa: BLE001  (the ComfyUI outputs stand; the report says what failed)
        run.workflows["engine"] = {"where": WHERE, "error": f"{type(exc).__name__}: {exc}"}
        print(f"[main job] the engine's video failed: {exc}", flush=True)


def _engine_video(run, root: Path, base: Path) -> None:
    s = run.settings
    out = Path(s.output)
    models = base / "models"
    motion = models / "animatediff_models" / MOTION_FILE
    checkpoint = next((models / "checkpoints").glob("*.safetensors"))
    reference = next((base / "input").glob("*.png"))
    engine = [sys.executable, os.path.join(PACK_DIR, "engine")]
    common = ["--checkpoint", str(checkpoint), "--motion-model", str(motion), "--comfyui-root", str(root),
              "--models-dir", str(models), "--device", "cpu"]
    with open(out / "engine.log", "w") as log:
        _run([sys.executable, "-m", "tools.main_job_engine", "--make-motion", str(motion)], log, "motion model")
        _run(engine + ["train", "--photos", str(reference), "--name", IDENTITY, "--class-word", "person",
                       "--faces", str(models / "insightface"), "--ti-steps", str(s.ti_steps), "--ti-batch-size", "1",
                       "--sia-iterations", str(s.sia_iterations), "--frames", str(s.train_frames),
                       "--width", str(s.size), "--height", str(s.size), "--seed", str(s.seed), "--overwrite"]
             + common, log, "training")
        _run(engine + ["generate", "--identity", IDENTITY, "--prompt", "walking on a beach", "--output",
                       str(out / ANIMATION), "--frames", str(s.frames), "--width", str(s.size), "--height",
                       str(s.size), "--steps", str(s.steps), "--scheduler", "lcm", "--cfg", "1.0", "--seed",
                       str(s.seed)] + common, log, "generation")
    run.files["engine_animation"] = [str(out / ANIMATION)]
    # the host's folders are a scratch copy that goes with the run: keep the identity beside the animation
    kept = out / "identity"
    kept.mkdir(exist_ok=True)
    run.files["engine_identity"] = []
    for kind, role in (("sia", "adapter"), ("embeddings", "token")):
        dst = kept / f"{IDENTITY}.{role}.safetensors"
        shutil.copyfile(models / kind / f"{IDENTITY}.safetensors", dst)
        run.files["engine_identity"].append(str(dst))
    run.workflows["engine"] = {"where": WHERE, "motion_model": str(motion), "frames": s.frames,
                               "log": str(out / "engine.log")}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--make-motion"]:
        print(json.dumps({"motion_model": save_random_motion_module(sys.argv[2])}))
