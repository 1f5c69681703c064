"""The Wan adapter stage (training/wan_trainer.py, ``train_wan_sia``): seconds per iteration against plain
sampling, and peak memory at Wan 2.1 1.3B size without a GPU. Needs a host with core Wan
(COMFYUI_ROOT=<modern ComfyUI>).

    scripts/bench bench/bench_wan_train.py --runs 3            # tiny Wan model on the CPU: the overhead ratio
    scripts/bench bench/bench_wan_train.py --device cuda --wan-size 1.3B --frames 17 --size 448 --iterations 10
                                                               # absolute seconds per iteration on a GPU
    scripts/bench bench/bench_wan_train.py --cancel            # how fast Cancel answers in the adapter stage
    scripts/bench bench/bench_wan_train.py --estimate          # peak memory of the adapter and token stages at 1.3B
                                                               # (the adapter stage also at 14B), meta device

Overhead ratio (as ``bench_train.py`` prints it for SD1.5): an adapter iteration against plain generation from
the same run, same MODEL, cfg (the training cfg, 1.5), frames and size: 4 steps of euler + simple through the
stock ``KSampler`` and a VAE decode of the whole latent it made, without gradients, run between the training
iterations (outside their timings) so a slow spell of the machine falls on both. On the CPU the times are the
thread's CPU time (one torch thread), on CUDA wall time with the queue drained. The first iteration and the
first plain run are left out (loading, warm-up); the median of the others is taken per run, and ``--runs N``
prints each run's ratio and their median. The tiny model (2 blocks of width 256) runs with core's Wan 2.1 VAE
at its real size (core has no smaller one) and the tests' tiny recogniser; prompts are random umT5-width
conditionings (no text encoder). At 1.3B size (``--wan-size 1.3B``, for a GPU) the weights are random fp16,
loaded through core's loader, and the recogniser is the ResNet-100 architecture.

``--busy``: as ``bench_train.py --busy``, the host operations of an adapter iteration and of a plain generation
and, on CUDA, the GPU's busy share, kernels and busiest kernels (bench/device_busy.py), from the last two
iterations of each run, which the times then leave out.

``--cancel`` presses Cancel (``interrupt_current_processing``, as the queue's Cancel does) from another thread a
quarter of an iteration into the third adapter iteration and prints the seconds until the run has stopped, against
the time of one iteration (checking only between iterations would wait up to that); the trainer checks before
each Wan block and each VAE decoder layer.

``--estimate``: the peak of the adapter stage's gradient step at the default settings
(``WanSIATrainSettings``: frames, size, 4 Euler steps, rank 4) at the training cfg (1.5: cond and uncond, so
the model runs a batch of 2), counted on the meta device (``wan_train_memory.py``: core's WanModel and Wan
VAE built there, the trainer's checkpointing of the Wan blocks on and off, the first latent frame decoded with
gradient, fused attention as on a GPU), plus the weights: the diffusion model in fp16 (bf16 is the same
size), the Wan VAE in fp16, umT5-XXL as a 12 GB user loads it (fp8 e4m3fn, core's scaled-fp8 file) and the
ResNet-100 face encoder (fp32), all counted as resident, as the SD1.5 figure counts CLIP-L and the face
encoder. Then the same for Wan 14B (and Wan 2.2 A14B's low-noise expert, the same shapes) with fp8 e4m3fn
weights cast per layer (core's manual cast), and the check at small size: the tiny Wan model with the real
Wan VAE, the same step run for real on the CPU and on the meta device, both figures side by side.
"""
import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common  # noqa: E402  (first: one thread, the test helpers importable)
import device_busy  # noqa: E402
import torch  # noqa: E402

TARGET_GIB = 12   # the 1.3B adapter stage at the defaults must fit a 12 GB card (issue 27)
FACE_ENCODER_GIB = 0.24   # the ResNet-100 face encoder, fp32 (as in bench_train.py's figure)
TEMPLATES = ["{token} {class_word} smiling", "{token} {class_word} in a park"]


def build(args, scratch):
    """(MODEL at shift 8, VAE, identity loss) for the timing runs."""
    import comfy.sd

    import wan_models
    from bench_train import _faces
    from comfyui_personalvideo.training.face import analysis
    from comfyui_personalvideo.training.face.identity_loss import IdentityLoss
    from comfyui_personalvideo.training.face.references import embed_references
    from pv_tools.random_wan_models import wan21_vae_state_dict, wan_state_dict

    t0 = time.perf_counter()
    with torch.inference_mode():
        if args.wan_size == "tiny":
            model = wan_models.tiny_wan_model(seed=0)
        else:
            model = comfy.sd.load_diffusion_model_state_dict(wan_state_dict(args.wan_size, 0, torch.float16))
        model = wan_models.with_shift(model, 8.0)
        vae = comfy.sd.VAE(sd=wan21_vae_state_dict(seed=0))
        face_analysis, photo = _faces(scratch, "tiny" if args.wan_size == "tiny" else "r100", args.size)
        stack = analysis.load_face_stack(face_analysis)
        encoder = stack.encoder()
        refs = embed_references(stack.detector, encoder, photo)
    print(f"built in {time.perf_counter() - t0:.0f} s: Wan {args.wan_size} (random weights), core's Wan 2.1 VAE "
          f"(random weights), recogniser {'tiny' if args.wan_size == 'tiny' else 'ResNet-100'} (random weights)")
    return model, vae, IdentityLoss(stack.detector, encoder, refs.embeddings)


def plain_generation(args, model, vae):
    """Plain generation as a Wan workflow makes it, without gradients: KSampler (euler, simple, 4 steps, the
    training cfg) over the video latent, then VAE Decode of all of it."""
    import nodes

    import wan_models
    from comfyui_personalvideo.training.sia_settings import TRAINING_CFG

    positive, negative = wan_models.random_text_cond(1), wan_models.random_text_cond(2)
    latent = wan_models.empty_wan_latent(args.frames, args.size, args.size)

    def run():
        import comfy.utils

        shown, comfy.utils.PROGRESS_BAR_ENABLED = comfy.utils.PROGRESS_BAR_ENABLED, False   # as training: no bar
        try:
            with torch.inference_mode():
                samples = nodes.KSampler().sample(model, 0, 4, TRAINING_CFG, "euler", "simple", positive, negative,
                                                  latent, denoise=1.0)[0]["samples"]
                vae.decode(samples)
        finally:
            comfy.utils.PROGRESS_BAR_ENABLED = shown
    return run


def run_once(args, parts, checkpointing, plain):
    """One training run of ``args.iterations``; (median iteration seconds, median plain seconds)."""
    import wan_models
    from bench_train import Meter, NoCount
    from comfyui_personalvideo.training import prompts, wan_trainer
    from comfyui_personalvideo.training.sia_settings import TRAINING_CFG

    model, vae, loss = parts
    meter = Meter(torch.device(args.device), 0, NoCount(), plain)
    # --busy profiles the last two iterations and the plain generations after them (left out of the times)
    busy = device_busy.BusyMeter.last_two(args.device, args.iterations) if args.busy else None
    if busy is not None:
        meter.plain = busy.timed("plain", plain)
    settings = wan_trainer.WanSIATrainSettings(iterations=args.iterations, frames=args.frames, width=args.size,
                                               height=args.size, cfg=TRAINING_CFG, seed=0,
                                               gradient_checkpointing=checkpointing, precision=args.precision)
    adapter = wan_trainer.new_wan_adapter(model, rank=4, seed=0)

    def encode(text):
        return wan_models.random_text_cond(10 + sum(map(ord, text)) % 1000)

    meter.start()
    with torch.inference_mode(), (busy.around_training_sampler() if busy else contextlib.nullcontext()):
        history = wan_trainer.train_wan_sia(model, adapter, encode, wan_models.random_text_cond(2), vae, loss,
                                            prompts.PromptSampler(TEMPLATES, 0), settings,
                                            progress=lambda i, value, similarity, frame:
                                            meter.hook("adapter", i, value, similarity))
    meter.finish()
    if busy is not None:
        meter.leave_out("adapter", busy.profiled["adapter"], busy.profiled["plain"])
        device_busy.report(busy, [("adapter", "adapter iteration"), ("plain", "plain generation")])
    if history.skipped:
        print(f"  ({history.skipped} of {len(history.loss)} iterations found no face: they are timed without "
              "the backward pass)")
    return meter.per_step("adapter"), meter.plain_per_run(), meter.peak.get("adapter")


def cancel_delay(args, parts):
    """(seconds from Cancel to the run's end, seconds of one iteration) in the adapter stage."""
    import threading

    import comfy.model_management

    import wan_models
    from comfyui_personalvideo.training import prompts, wan_trainer
    from comfyui_personalvideo.training.sia_settings import TRAINING_CFG

    model, vae, loss = parts
    settings = wan_trainer.WanSIATrainSettings(iterations=max(args.iterations, 4), frames=args.frames,
                                               width=args.size, height=args.size, cfg=TRAINING_CFG, seed=0,
                                               gradient_checkpointing=args.checkpointing[0], precision=args.precision)
    adapter = wan_trainer.new_wan_adapter(model, rank=4, seed=0)
    stamps, pressed = [time.perf_counter()], []

    def press():
        pressed.append(time.perf_counter())
        comfy.model_management.interrupt_current_processing(True)

    def hook(i, value, similarity, frame):
        stamps.append(time.perf_counter())
        if i == 1 and not pressed:   # the third iteration starts now; the second took stamps[-1] - stamps[-2]
            threading.Timer((stamps[-1] - stamps[-2]) / 4, press).start()

    with torch.inference_mode():
        try:
            wan_trainer.train_wan_sia(model, adapter, lambda text: wan_models.random_text_cond(7),
                                      wan_models.random_text_cond(2), vae, loss,
                                      prompts.PromptSampler(TEMPLATES, 0), settings, progress=hook,
                                      check_interrupt=comfy.model_management.throw_exception_if_processing_interrupted)
        except comfy.model_management.InterruptProcessingException:
            return time.perf_counter() - pressed[0], stamps[2] - stamps[1]
    comfy.model_management.interrupt_current_processing(False)
    raise SystemExit("the run ended before Cancel stopped it: use more --iterations")


def timing(args):
    from comfyui_personalvideo.training.sia_settings import TRAINING_CFG

    unit = "CPU thread time" if args.device == "cpu" else "wall time"
    with tempfile.TemporaryDirectory(prefix="pv-bench-") as scratch:
        parts = build(args, scratch)
        plain = plain_generation(args, parts[0], parts[1])
        lines = []
        for mode in args.checkpointing:
            each = []
            for k in range(args.runs):
                iteration, plain_s, peak = run_once(args, parts, mode, plain)
                each.append((iteration, plain_s))
                print(f"checkpointing {mode}, run {k + 1} of {args.runs}: {iteration:.4f} s/iteration, plain "
                      f"{plain_s:.4f} s, ratio {iteration / plain_s:.2f}x"
                      + (f", peak GPU memory {peak / 1024 ** 3:.2f} GiB" if peak else ""))
            ratios = [i / p for i, p in each]
            lines.append(f"  checkpointing {mode}: median {statistics.median(ratios):.2f}x over {len(each)} run(s) ("
                         + ", ".join(f"{x:.2f}x" for x in ratios) + f"); iteration "
                         f"{statistics.median(i for i, _ in each):.4f} s, "
                         f"plain {statistics.median(p for _, p in each):.4f} s")
    print(f"adapter iteration / plain generation (KSampler euler + simple, 4 steps, cfg {TRAINING_CFG}, {args.frames} "
          f"x {args.size} x {args.size}, + VAE decode, no gradients), Wan {args.wan_size}, {args.iterations} "
          f"iterations per run (the first left out), {unit}:")
    print("\n".join(lines))


def estimate(args):
    """The peaks at 1.3B and 14B size from the meta device, and the small-size check."""
    import comfy.ops

    import wan_train_memory as wm
    from comfyui_personalvideo.training.sia_settings import TRAINING_CFG
    from comfyui_personalvideo.training.wan_trainer import WanSIATrainSettings

    gib = 1024 ** 3
    defaults = WanSIATrainSettings()
    frames, width, height = defaults.frames, defaults.width, defaults.height
    umt5 = wm.umt5_xxl_parameters()
    umt5_fp8, umt5_fp16 = umt5 / gib, umt5 * 2 / gib
    parts = wm.wan_parts("1.3B", "meta", torch.float16)
    model_w, vae_w = wm.weight_bytes(parts[0]) / gib, wm.weight_bytes(parts[1]) / gib
    others = umt5_fp8 + FACE_ENCODER_GIB
    print(f"weights: Wan 2.1 1.3B {model_w:.2f} GiB (fp16; bf16 the same), Wan 2.1 VAE {vae_w:.2f} GiB (fp16), "
          f"adapter rank 4 {sum(p.numel() for p in parts[2]) * 4 / 2 ** 20:.1f} MiB (fp32); umT5-XXL "
          f"({umt5 / 1e9:.2f}B parameters) {umt5_fp8:.2f} GiB in fp8 e4m3fn ({umt5_fp16:.2f} GiB in fp16) and the "
          f"ResNet-100 face encoder {FACE_ENCODER_GIB:.2f} GiB (fp32) on top")
    print(f"estimated peak of one gradient step at the defaults ({frames} frames of {width}x{height}: latent "
          f"{wm.latent_shape(frames, width, height)}, cfg {TRAINING_CFG}: batch 2; rank 4; fp16, fused attention):")
    total = {}
    for ckpt in (True, False):
        peak = wm.step_peak(parts, "meta", torch.float16, frames, width, height, ckpt, TRAINING_CFG) / gib
        total[ckpt] = peak + model_w + vae_w + others
        print(f"  checkpointing {'on ' if ckpt else 'off'}: {peak:6.2f} GiB activations, "
              f"{peak + model_w + vae_w:6.2f} GiB with Wan and its VAE, {total[ckpt]:6.2f} GiB with umT5 (fp8) and "
              "the face encoder")
    model_only = wm.step_peak(parts, "meta", torch.float16, frames, width, height, True, TRAINING_CFG, decode=False)
    print(f"  of which, checkpointing on, the diffusion model's forward and backward without the decode: "
          f"{model_only / gib:.2f} GiB (the difference: the one-frame decode with gradient; its decoder's middle and "
          "up-sampling layers are checkpointed, its first convolution and head are not)")
    print(f"adapter stage at the defaults, checkpointing on, everything resident: {total[True]:.2f} GiB; target "
          f"at most {TARGET_GIB} GiB: {'met' if total[True] <= TARGET_GIB else 'NOT met'}")
    if args.sweep:
        print("checkpointing on, everything resident (GiB), by frames and size:")
        for f in (5, 9, 13, 17, 21, 25):
            row = [wm.step_peak(parts, "meta", torch.float16, f, s, s, True, TRAINING_CFG) / gib
                   + model_w + vae_w + others for s in (384, 416, 448, 464, 480)]
            print(f"  {f:3d} frames: " + "  ".join(f"{s}px {v:5.2f}" for s, v in zip((384, 416, 448, 464, 480), row)))
    token_estimate(args, parts, model_w, vae_w, umt5_fp8, width, height)
    big = wm.wan_parts("14B", "meta", torch.float8_e4m3fn, operations=comfy.ops.manual_cast,
                       vae_dtype=torch.float16)
    big_w = wm.weight_bytes(big[0]) / gib
    peak = wm.step_peak(big, "meta", torch.float16, frames, width, height, True, TRAINING_CFG) / gib
    print(f"Wan 14B (Wan 2.2 A14B low-noise expert: the same shapes), fp8 e4m3fn weights cast per layer to fp16: "
          f"weights {big_w:.2f} GiB, activations at the defaults, checkpointing on, {peak:.2f} GiB; with the VAE, "
          f"umT5 (fp8) and the face encoder {big_w + peak + vae_w + others:.2f} GiB")
    print(f"check at small size (tiny Wan with the real Wan VAE, {args.frames} frames of {args.size} px, fp32): "
          "real CPU run vs meta-device run, same step")
    real = wm.wan_parts("tiny", "cpu", torch.float32)
    meta = wm.wan_parts("tiny", "meta", torch.float32)
    for ckpt in (True, False):
        r = wm.step_peak(real, "cpu", torch.float32, args.frames, args.size, args.size, ckpt, TRAINING_CFG)
        m = wm.step_peak(meta, "meta", torch.float32, args.frames, args.size, args.size, ckpt, TRAINING_CFG)
        print(f"  checkpointing {'on ' if ckpt else 'off'}: measured {r / 2 ** 20:8.1f} MiB, estimated "
              f"{m / 2 ** 20:8.1f} MiB (ratio {m / r:.3f})")


def token_estimate(args, parts, model_w, vae_w, umt5_fp8, width, height):
    """The token stage's peak at 1.3B size (umT5-XXL in fp8, cast per layer, with gradient to its input) and the
    small-size check of the same count."""
    import comfy.ops

    import wan_train_memory as wm
    from comfyui_personalvideo.training.textual_inversion import TISettings

    gib = 1024 ** 3
    batch = TISettings().batch_size
    umt5 = wm.umt5_xxl("meta", torch.float8_e4m3fn, comfy.ops.manual_cast)
    print(f"token stage at the defaults (batch {batch} single-frame photo latents of {width}x{height}, one prompt of "
          f"{wm.UMT5_TOKENS} umT5 tokens with gradient to its input; fp16 compute, fused attention):")
    for ckpt in (True, False):
        peak = wm.token_step_peak(parts[0], umt5, "meta", torch.float16, batch, width, height, ckpt) / gib
        print(f"  checkpointing (Wan blocks, umT5 layers) {'on ' if ckpt else 'off'}: {peak:6.2f} GiB activations; with Wan, its VAE "
              f"and umT5 (fp8) resident {peak + model_w + vae_w + umt5_fp8:6.2f} GiB")
    print(f"  check at small size (tiny Wan, a 3-layer umT5 of core's class, {batch} photos of {args.size} px, "
          "fp32): real CPU run vs meta-device run")
    real, meta = wm.wan_parts("tiny", "cpu", torch.float32), wm.wan_parts("tiny", "meta", torch.float32)
    small = {d: wm.umt5_xxl(d, torch.float32, config=wm.SMALL_UMT5) for d in ("cpu", "meta")}
    for ckpt in (True, False):
        r = wm.token_step_peak(real[0], small["cpu"], "cpu", torch.float32, batch, args.size, args.size, ckpt)
        m = wm.token_step_peak(meta[0], small["meta"], "meta", torch.float32, batch, args.size, args.size, ckpt)
        print(f"    checkpointing {'on ' if ckpt else 'off'}: measured {r / 2 ** 20:8.1f} MiB, estimated "
              f"{m / 2 ** 20:8.1f} MiB (ratio {m / r:.3f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--wan-size", default="tiny", choices=["tiny", "1.3B"],
                        help="the Wan model timed: the tests' tiny one, or 1.3B size (for a GPU)")
    parser.add_argument("--frames", type=int, default=5, help="video frames, 4k + 1")
    parser.add_argument("--size", type=int, default=64, help="width and height in pixels, a multiple of 16")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--runs", type=int, default=1, help="train this many times per setting; medians and each run")
    parser.add_argument("--checkpointing", nargs="+", choices=["on", "off"], default=["on"],
                        help="gradient checkpointing forced on and/or off (one set of figures each)")
    parser.add_argument("--precision", default="auto", help="auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16, fp16")
    parser.add_argument("--busy", action="store_true",
                        help="also profile the last two iterations and two plain generations (torch.profiler, "
                             "bench/device_busy.py): host operations each, and on CUDA the GPU's busy share and "
                             "kernels; the times leave the profiled ones out (use at least 4 iterations)")
    parser.add_argument("--cancel", action="store_true", help="how fast Cancel answers in the adapter stage")
    parser.add_argument("--estimate", action="store_true",
                        help="estimate the peak memory at 1.3B / 14B size on the meta device, checked against a "
                             "real run at --frames/--size with the tiny model")
    parser.add_argument("--sweep", action="store_true", help="with --estimate: the 1.3B figure by frames and size")
    args = parser.parse_args()

    bench_common.start_host(args.device)
    import wan_models

    if not wan_models.has_wan():
        sys.exit(wan_models.NO_WAN)
    if args.estimate:
        with torch.inference_mode(False):
            estimate(args)
        return
    if args.cancel:
        with tempfile.TemporaryDirectory(prefix="pv-bench-") as scratch:
            delay, step = cancel_delay(args, build(args, scratch))
        print(f"Cancel in the adapter stage (Wan {args.wan_size}, {args.frames} x {args.size} x {args.size}): the run "
              f"stopped {delay:.3f} s after it was pressed; one iteration takes {step:.3f} s; ratio {delay / step:.3f}")
        return
    timing(args)


if __name__ == "__main__":
    main()
