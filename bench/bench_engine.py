"""The engine against the node: seconds per stage-2 (adapter) iteration and per token step, same weights, same
settings, same face stack, in one run, as a ratio.

    flock /tmp/pv-heavy.lock scripts/bench bench/bench_engine.py        # CPU: 2 frames of 64x64, 3 + 3 steps
    scripts/bench bench/bench_engine.py --tiny                          # the tests' tiny models: seconds
    scripts/bench bench/bench_engine.py --device cuda --frames 16 --size 512 --iterations 10 --ti-steps 10

Both train on one random-weight SD1.5-size checkpoint (UNet, CLIP-L, VAE; the node loads it with ComfyUI's
checkpoint loader, the engine with its own single-file loader) with the random ResNet-100 recogniser and the
tests' stand-in face detector (bench_train.py builds them).  Motion modules: the node gets AnimateDiff-
Evolved's AnimateLCM-layout model where the host has it; then the engine gets a random MotionAdapter of the same
layout; on a host without it (the default host) both run image-only, so the ratio compares like with like.
``--engine-motion`` adds the engine with motion modules as a third figure either way.  The first step of each
stage is left out; medians of the others.
"""
import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(__file__))

import bench_train  # noqa: E402  (the node's side and the models it builds; bench_common puts tests/ on sys.path)
import bench_common  # noqa: E402
import device_busy  # noqa: E402
import torch  # noqa: E402


@contextlib.contextmanager
def engine_iterations_profiled(busy):
    """Within the block each engine adapter iteration (its steps, decode, identity loss, backward and optimiser
    step: ``run_iteration`` and the ``AdapterRun.update`` after it) is a stretch of ``busy`` labelled adapter."""
    from comfyui_personalvideo.engine import adapter_step, train_adapter

    run_iteration, update = train_adapter.run_iteration, adapter_step.AdapterRun.update
    open_stretches = []

    def close(error=None):
        if open_stretches:
            open_stretches.pop().__exit__(type(error) if error else None, error, None)

    def started(*args, **kwargs):
        stretch = busy.stretch("adapter")
        stretch.__enter__()
        open_stretches.append(stretch)
        try:
            return run_iteration(*args, **kwargs)
        except BaseException as error:
            close(error)
            raise

    def finished(self, *args, **kwargs):
        try:
            return update(self, *args, **kwargs)
        finally:
            close()

    try:
        with bench_common.patched((train_adapter, "run_iteration", started),
                                  (adapter_step.AdapterRun, "update", finished)):
            yield
    finally:
        close()


def engine_run(args, parts, motion: bool):
    import folder_paths

    import host
    from comfyui_personalvideo.engine import models as engine_models
    from comfyui_personalvideo.training.sia_settings import TRAINING_CFG, SIATrainSettings as AdapterSettings
    from comfyui_personalvideo.engine.shipped_configs import shipped_config
    from comfyui_personalvideo.engine import training_dtypes
    from comfyui_personalvideo.engine.train import train_identity
    from comfyui_personalvideo.training.face.analysis import load_face_stack
    from comfyui_personalvideo.training.textual_inversion import TISettings

    model, clip, vae, face_analysis, photo = parts
    device = torch.device(args.device)
    if args.tiny:   # the very weights of the node's tiny models, mapped as the engine maps a checkpoint's
        from engine_models import engine_models_like

        models = engine_models_like(model, clip, vae)
    else:
        path = os.path.join(folder_paths.get_folder_paths("checkpoints")[0], "sd15_random.safetensors")
        models = engine_models.load_checkpoint(path, os.path.join(host.host_root(), "comfy", "sd1_tokenizer"))
    adapter = None
    if motion:
        from diffusers import MotionAdapter

        adapter = MotionAdapter.from_config(shipped_config("animatelcm_motion"))
        adapter.requires_grad_(False)
    training_dtypes.place(models, adapter, device, args.precision)   # as the personalvideo command places them
    stack = load_face_stack(face_analysis)
    stamps = {"token": [], "adapter": []}
    # --busy profiles the last two adapter iterations (left out of the times), as bench_train does the node's
    busy = device_busy.BusyMeter.last_two(device, args.iterations) if args.busy else None

    def hook(stage, i, total, loss, similarity):
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps[stage].append(time.perf_counter())

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pv-bench-engine-") as out, \
            (engine_iterations_profiled(busy) if busy else contextlib.nullcontext()):
        train_identity(models, [photo[0]], "bench_engine", "person", (stack, stack.encoder(device=device)), out,
                       motion_adapter=adapter,
                       ti_settings=TISettings(steps=args.ti_steps, batch_size=args.ti_batch_size,
                                              precision=args.precision),
                       sia_settings=AdapterSettings(iterations=args.iterations, frames=args.frames, width=args.size,
                                                    height=args.size, precision=args.precision,
                                                    cfg=TRAINING_CFG),   # the node's default: both run cfg 1.5
                       prompts="{token} {class_word} smiling", progress=hook)
    stack.encoder()

    def per_step(stage, first, leave_out=()):
        times, leave_out = [first] + stamps[stage], set(leave_out)
        steps = [b - a for i, (a, b) in enumerate(zip(times, times[1:])) if i not in leave_out][1:]
        return statistics.median(steps) if steps else float("nan")

    token = per_step("token", t0)
    return {"token": token, "busy": busy,
            "adapter": per_step("adapter", stamps["token"][-1] if stamps["token"] else t0,
                                busy.profiled["adapter"] if busy else ())}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ti-steps", type=int, default=3)
    parser.add_argument("--ti-batch-size", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--engine-motion", action="store_true", help="also time the engine with motion modules")
    parser.add_argument("--busy", action="store_true",
                        help="also profile the last two adapter iterations of each side (bench/device_busy.py): "
                             "host operations and, on CUDA, the GPU's busy share and kernels; the times leave the "
                             "profiled ones out (use at least 4 iterations)")
    parser.add_argument("--tiny", action="store_true",
                        help="the tests' tiny models on both sides, no motion modules (seconds; what the tests run)")
    args = parser.parse_args()
    if args.tiny and args.engine_motion:
        parser.error("--engine-motion needs the SD1.5-size models (no motion model fits the tiny UNet)")

    import host

    host.bootstrap(cpu=args.device == "cpu")
    import full_models

    node_motion = full_models.has_animatediff_evolved()
    print(f"torch {torch.__version__}, device {args.device}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
          f"host {host.host_root()}; {args.frames} frames of {args.size}x{args.size}, 4 LCM steps, "
          f"{args.ti_steps} token steps, {args.iterations} adapter iterations")
    with tempfile.TemporaryDirectory(prefix="pv-bench-") as scratch:
        parts = (bench_train.build_tiny if args.tiny else bench_train.build)(args, scratch)
        node_motion = node_motion and not args.tiny
        # checkpointing as the engine's default chooses it (on on CUDA, off on the CPU), so both do the same work
        node = bench_train.run_once(args, parts, "bench_node", args.device == "cuda")
        engine = engine_run(args, parts, motion=node_motion)
        rows = [("node (ComfyUI)", node), ("engine (diffusers + peft)", engine)]
        if args.engine_motion and not node_motion:
            rows.append(("engine with motion modules", engine_run(args, parts, motion=True)))
    where = "with motion modules" if node_motion else "image-only (no AnimateDiff-Evolved in this host)"
    print(f"seconds per step, {where}:")
    for label, r in rows:
        print(f"  {label:30s} stage 1 {r['token']:.3f} s/step   stage 2 {r['adapter']:.3f} s/iteration")
    print(f"ratio engine / node: stage 2 {engine['adapter'] / node['adapter']:.2f}x, "
          f"stage 1 {engine['token'] / node['token']:.2f}x")
    if args.busy:
        for label, r in rows:
            print(f"{label}:")
            device_busy.report(r["busy"], [("adapter", "stage-2 iteration")])
        counts = [r["busy"].summary("adapter") for _, r in rows[:2]]
        if all(counts) and counts[0]["operations"]:
            print(f"host operations per stage-2 iteration, engine / node: "
                  f"{counts[1]['operations'] / counts[0]['operations']:.2f}x")


if __name__ == "__main__":
    main()
