"""Trainer speed and memory at SD1.5 size: seconds per adapter iteration (stage 2), per token step (stage 1),
and peak memory, on SD1.5-size architectures with random weights.

    scripts/bench bench/bench_train.py                     # CPU, reduced: 2 frames of 64x64, 3 + 3 steps
    scripts/bench bench/bench_train.py --compare           # the same with and without the memory savings
    scripts/bench bench/bench_train.py --device cuda --frames 16 --size 512 --ti-steps 20 --iterations 10
                                                           # the paper's training size on a GPU
    scripts/bench bench/bench_train.py --tiny --runs 3 --iterations 8 --checkpointing on off
                                                           # the overhead ratio on the tests' tiny models

Overhead ratio (printed by every timing run): a stage-2 iteration against plain generation from the same run,
same MODEL, cfg, negative prompt, frames and size: 4 steps of lcm + sgm_uniform through the stock ``KSampler``
and a VAE decode of all the latents it made, without gradients. The plain generation runs between the
training iterations (outside their timings), so a slow spell of the machine falls on both alike. On the CPU
the times are the thread's CPU time (``time.thread_time``: one torch thread, OMP_NUM_THREADS=1), which other
jobs on a shared machine do not inflate; on CUDA wall time with the queue drained. ``--runs N`` repeats the
whole training N times and prints each run's ratio and their median; ``--checkpointing on off`` gives the
figures with gradient checkpointing forced on and forced off, and ``auto`` with the trainer's choice by the free
memory (on CUDA; ``--card-gib 16`` makes the choice see the free memory of a 16 GB card on a larger GPU, to
time the choice a 12-24 GB card gets: on, off, or partial). ``--tiny``: the tests' tiny models (small
SD1.5-layout UNet, 2-layer CLIP, narrow VAE, tiny recogniser) at 2 frames of 64x64, where the time goes to
per-operation overhead as it does on a fast GPU at full size.

What runs is the trainer the node calls (``training.identity_training.train_identity``) on: a random-weight SD1.5 checkpoint (UNet, CLIP-L,
VAE) saved and loaded with ComfyUI's checkpoint loader (so ComfyUI picks dtypes and devices as for a real
one); an AnimateLCM-layout motion model attached through AnimateDiff-Evolved when the host has it (e.g.
COMFYUI_ROOT=/path/to/ComfyUI with AnimateDiff-Evolved in its custom_nodes); the real ResNet-100
(glintr100) recogniser architecture with random weights and the tests' stand-in face detector (one large
face in the middle of any frame, so every iteration trains). The first step of each stage is left out of
the timings (loading, allocator warm-up); the median of the others is reported, and the whole identity
time is extrapolated from it.

Memory: on CUDA torch.cuda.max_memory_allocated per stage; on the CPU the peak bytes held for backward
(tensors autograd saved, weights excluded: deterministic) and the process's peak RSS.

    COMFYUI_ROOT=/path/to/ComfyUI scripts/bench bench/bench_train.py --estimate   # full-size memory, no GPU
    scripts/bench bench/bench_train.py --cancel            # how fast Cancel answers in each stage

``--breakdown`` also prints where a stage-2 iteration's time goes: the sampling steps without gradient, the
gradient step's forward, the trained frame's decode, the identity loss (detection, crop, recogniser), backward
with the optimiser step, and the rest, each as seconds and as a share of the iteration (same clock, iterations
after the first). With gradient checkpointing the backward part includes the checkpointed layers' recomputed
forwards. The parts are timed by wrapping the trainer's own functions for the run; on CUDA every reading drains
the GPU's queue, so the parts cannot overlap there and the iteration runs a little slower than without it.

``--busy`` also profiles the last two stage-2 iterations and the plain generations after them with torch.profiler
(bench/device_busy.py; their times are left out of the other figures, so give it at least 4 iterations) and
prints, for each, the torch operations the host dispatched and, on CUDA, the share of wall time the GPU was busy
(some kernel or copy running), how many kernels ran and which took the most time. A busy share well below 100 %
says the host does not keep the GPU fed (per-operation cost), near 100 % that the arithmetic is the limit. On the
CPU the operation counts say how much more an iteration asks of the host than plain generation does.

``--cancel`` presses Cancel (``interrupt_current_processing``) from another thread in the middle of the third
token step and of the third adapter iteration (a quarter of the second one's time after it started)
and prints how long the run took to stop, next to the length of a step / iteration: the wait if Cancel were
only looked at between them.

``--estimate`` works out the peak of each stage's gradient step at the default settings (stage 2: 16 frames of
512x512 at cfg 1.5, so the UNet runs 32 latents, a rank-4 adapter, one frame decoded; stage 1: a batch of 4
photos at 512x512) without allocating it: the SD1.5 UNet and the SD VAE are built on the meta device in fp16 (the
dtype ComfyUI loads SD1.5 in on a GPU, and the one auto precision trains it in, without autocast), with an
AnimateLCM-layout motion model built from AnimateDiff-Evolved's own classes and inserted where it inserts it
(when the host has AnimateDiff-Evolved: COMFYUI_ROOT=/path/to/ComfyUI), one gradient step runs there (fused
attention as on a GPU: PyTorch's flash kernel; the trainer's gradient checkpointing on and off), and a
dispatch-mode tracker counts the bytes of every tensor the step creates, alive at once (tests/autograd_memory.py
AllocationPeak); the weights are added, and for the stage-2 figure checked against the target the CLIP-L text
encoder and the face encoder. It then makes auto's choice for stage 2 on 12, 16 and 24 GB cards from the same
checkpointed step, measured as the trainer measures its first pass, and prints the recomputation left (its
share of the checkpointed layers' FLOPs, torch's FLOP counter on the meta device). The same step at small size
is then run twice, for real on the CPU and on the meta device, and both figures are printed side by side, so
the estimate is checked where both exist, with the CPU allocator's own peak in the real run (torch.profiler's
memory events), so the count is checked against something other than itself. Not modelled: the
face encoder's few MB of activations, allocator rounding and caching (on a GPU, expect some 10-20 % above the
figure).
"""
import argparse
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common  # noqa: E402  (first: one thread, the test helpers importable)
import device_busy  # noqa: E402
import torch  # noqa: E402


def _faces(scratch, depth, size):
    """A random recogniser of ``depth`` in a face stack that finds the face at the centre, and the reference
    photo at ``size`` x ``size``."""
    import face_fixtures as ff

    recognizer = ff.export_recognizer(os.path.join(scratch, f"{depth}.onnx"), depth, seed=1)
    face_analysis = ff.centre_face_analysis(os.path.join(scratch, "insightface"), recognizer=recognizer,
                                            encoder_cache=os.path.join(scratch, "enc-cache"))
    photo = ff.photo_image("astronaut").movedim(-1, 1)
    photo = torch.nn.functional.interpolate(photo, size=(size, size), mode="area")
    return face_analysis, photo.movedim(1, -1).contiguous()


def build_tiny(args, scratch):
    """The tests' tiny models (``--tiny``): what the trainer's tests train, no motion model."""
    import tiny_models

    t0 = time.perf_counter()
    with torch.inference_mode():
        dtype = bench_common.DTYPES[args.dtype] if getattr(args, "dtype", None) else None
        model, clip, vae = (tiny_models.tiny_sd15_model(seed=0, dtype=dtype), tiny_models.tiny_clip(),
                            tiny_models.tiny_vae())
        face_analysis, photo = _faces(scratch, "tiny", args.size)
    print(f"built in {time.perf_counter() - t0:.0f} s: the tests' tiny models (small SD1.5-layout UNet in "
          f"{model.model.get_dtype()}, 2-layer CLIP, narrow VAE, tiny recogniser), no motion model")
    return model, clip, vae, face_analysis, photo


def build(args, scratch):
    import folder_paths
    import nodes

    import full_models

    with torch.inference_mode():
        ckpt_dir = folder_paths.get_folder_paths("checkpoints")[0]
        t0 = time.perf_counter()
        full_models.save_sd15_checkpoint(os.path.join(ckpt_dir, "sd15_random.safetensors"))
        model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint("sd15_random.safetensors")[:3]
        motion = "none (AnimateDiff-Evolved is not in this host)"
        if full_models.has_animatediff_evolved():
            folder = folder_paths.get_folder_paths("animatediff_models")[0]
            full_models.save_animatelcm_motion_model(os.path.join(folder, "AnimateLCM_random.safetensors"))
            (model,) = nodes.NODE_CLASS_MAPPINGS["ADE_AnimateDiffLoaderGen1"]().load_mm_and_inject_params(
                model, "AnimateLCM_random.safetensors", "lcm avg(sqrt_linear,linear)")[:1]
            motion = "AnimateLCM layout (random weights) through AnimateDiff-Evolved"
        face_analysis, photo = _faces(scratch, "r100", args.size)
    print(f"built in {time.perf_counter() - t0:.0f} s: SD1.5-size UNet + CLIP-L + VAE (random weights), "
          f"motion model: {motion}, recogniser: ResNet-100 (random weights)")
    return model, clip, vae, face_analysis, photo


class Meter:
    """Times and memory per stage, fed by train_identity's progress hook; between adapter iterations it runs
    ``plain`` (plain generation without gradients) and times it, outside the iterations' times."""

    def __init__(self, device, ti_steps, saved, plain=None):
        self.device = device
        self.ti_steps = ti_steps
        self.saved = saved
        self.plain = plain
        self.now = bench_common.clock(device)
        self.times = {"token": [], "adapter": []}
        self.plain_times = []
        self.peak = {}
        self.saved_peak = {}
        self._adapter_peak = 0

    def start(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self.last = self.now()

    def hook(self, stage, i, loss, similarity):
        self.times[stage].append(self.now() - self.last)
        if stage == "token" and i == self.ti_steps - 1:
            self.saved_peak["token"] = self.saved.reset_peak()
            if self.device.type == "cuda":
                self.peak["token"] = torch.cuda.max_memory_allocated()
                torch.cuda.reset_peak_memory_stats()
        if stage == "adapter" and self.plain is not None:
            if self.device.type == "cuda":   # the plain run's memory is not the adapter stage's
                self._adapter_peak = max(self._adapter_peak, torch.cuda.max_memory_allocated())
            t0 = self.now()
            self.plain()   # no gradients: nothing is saved for backward
            self.plain_times.append(self.now() - t0)
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
        self.last = self.now()

    def finish(self):
        self.saved_peak["adapter"] = self.saved.reset_peak()
        if self.device.type == "cuda":
            self.peak["adapter"] = max(self._adapter_peak, torch.cuda.max_memory_allocated())

    def leave_out(self, stage, steps, plain_runs):
        """Drops the times of ``steps`` of ``stage`` and of the plain runs ``plain_runs`` (indices)."""
        steps, plain_runs = set(steps), set(plain_runs)
        self.times[stage] = [t for i, t in enumerate(self.times[stage]) if i not in steps]
        self.plain_times = [t for i, t in enumerate(self.plain_times) if i not in plain_runs]

    def per_step(self, stage):
        """Median seconds per step after the first (which includes loading and warm-up)."""
        steps = self.times[stage][1:]
        return statistics.median(steps) if steps else float("nan")

    def plain_per_run(self):
        runs = self.plain_times[1:]   # the first loads the models for plain sampling
        return statistics.median(runs) if runs else float("nan")


class Breakdown:
    """Where the time of each stage-2 iteration goes (``--breakdown``), on the bench's clock: the trainer's own
    functions wrapped for the run, read only while the training sampler runs (stage 2)."""

    PARTS = (("steps", "sampling steps without gradient"),
             ("forward", "gradient step: the model's forward"),
             ("decode", "gradient step: decode of the trained frame"),
             ("loss", "identity loss: detection, crop, recogniser"),
             ("backward", "backward and the optimiser step"),
             ("last step, rest", "rest of the gradient step (regulariser, ...)"),
             ("iteration, rest", "rest of the iteration (prompt, noise, sampler set-up)"))

    def __init__(self, device):
        self.now = bench_common.clock(device)
        self.iterations = []   # per training-sampler call: {part: seconds}
        self._current = None

    def _timed(self, part, fn):
        def run(*args, **kwargs):
            if self._current is None:   # outside stage 2's sampler (stage 1, plain generation)
                return fn(*args, **kwargs)
            t0 = self.now()
            try:
                return fn(*args, **kwargs)
            finally:
                self._current[part] = self._current.get(part, 0.0) + self.now() - t0
        return run

    @contextlib.contextmanager
    def installed(self):
        from comfyui_personalvideo.training import few_step_sampler, precision, sia_trainer
        from comfyui_personalvideo.training.face import identity_loss

        sampler = few_step_sampler.FewStepTrainingSampler
        init, sample = sampler.__init__, sampler.sample
        breakdown = self

        def wrapped_init(self, last_step, *args, **kwargs):
            init(self, breakdown._timed("last step", last_step), *args, **kwargs)

        def wrapped_sample(self, *args, **kwargs):
            breakdown._current = {}
            t0 = breakdown.now()
            try:
                return sample(self, *args, **kwargs)
            finally:
                breakdown._current["sampler"] = breakdown.now() - t0
                breakdown.iterations.append(breakdown._current)
                breakdown._current = None

        patches = [(sampler, "__init__", wrapped_init), (sampler, "sample", wrapped_sample)]
        for owner, name, part in ((few_step_sampler, "with_fallback", "forward"),
                                  (sia_trainer.SD15Backbone, "decode", "decode"),
                                  (identity_loss.IdentityLoss, "__call__", "loss"),
                                  (precision.Precision, "backward_and_step", "backward")):
            patches.append((owner, name, self._timed(part, getattr(owner, name))))
        with bench_common.patched(*patches):
            yield self

    def means(self, iteration_seconds: list, leave_out=()) -> dict:
        """Mean seconds per part over the iterations after the first, the rests included, and the iteration;
        ``leave_out``: iterations (indices) not counted (profiled by --busy)."""
        leave_out = set(leave_out)
        kept = [i for i in range(1, min(len(self.iterations), len(iteration_seconds))) if i not in leave_out]
        if not kept:
            return {}
        runs = [self.iterations[i] for i in kept]
        mean = {k: statistics.fmean(r.get(k, 0.0) for r in runs)
                for k in ("sampler", "last step", "forward", "decode", "loss", "backward")}
        iteration = statistics.fmean(iteration_seconds[i] for i in kept)
        return {"steps": mean["sampler"] - mean["forward"] - mean["last step"], "forward": mean["forward"],
                "decode": mean["decode"], "loss": mean["loss"], "backward": mean["backward"],
                "last step, rest": mean["last step"] - mean["decode"] - mean["loss"] - mean["backward"],
                "iteration, rest": iteration - mean["sampler"], "iteration": iteration}


def plain_generation(args, parts):
    """Plain generation as a workflow makes it, without gradients: KSampler (lcm, sgm_uniform, 4 steps, the
    training cfg and negative prompt) over frames x size x size latents, then VAE Decode of all of them."""
    import nodes

    from comfyui_personalvideo.training.sia_settings import NEGATIVE_PROMPT, TRAINING_CFG

    model, clip, vae = parts[:3]
    with torch.inference_mode():
        positive = nodes.CLIPTextEncode().encode(clip, "a photo of a person smiling")[0]
        negative = nodes.CLIPTextEncode().encode(clip, NEGATIVE_PROMPT)[0]
    latent = {"samples": torch.zeros(args.frames, 4, args.size // 8, args.size // 8)}

    def run():
        import comfy.utils

        shown, comfy.utils.PROGRESS_BAR_ENABLED = comfy.utils.PROGRESS_BAR_ENABLED, False   # as training: no bar
        try:
            with torch.inference_mode():
                samples = nodes.KSampler().sample(model, 0, 4, TRAINING_CFG, "lcm", "sgm_uniform", positive,
                                                  negative, latent, denoise=1.0)[0]["samples"]
                vae.decode(samples)
        finally:
            comfy.utils.PROGRESS_BAR_ENABLED = shown
    return run


class NoCount(contextlib.nullcontext):
    """In place of SavedTensorBytes where the bytes held for backward are not counted."""

    def reset_peak(self):
        return None


def card_size(gib: float) -> None:
    """auto's choice reads the free memory of a ``gib`` GB card: the GPU's reading less what it has beyond it."""
    from comfyui_personalvideo.training import checkpoint_choice

    class SmallerCard(checkpoint_choice.CudaAllocator):
        def free(self):
            beyond = torch.cuda.get_device_properties(self.device).total_memory - int(gib * 1024 ** 3)
            return max(0, super().free() - max(0, beyond))

    real = checkpoint_choice.allocator_for
    checkpoint_choice.allocator_for = lambda device: (SmallerCard(device) if real(device) is not None else None)


def run_once(args, parts, name, checkpointing, plain=None):
    from autograd_memory import SavedTensorBytes
    from comfyui_personalvideo.training.identity_training import train_identity

    model, clip, vae, face_analysis, photo = parts
    device = torch.device(args.device)
    # the count of bytes held for backward hooks every saved tensor: on the CPU at SD1.5 size only, where it is
    # the memory figure (CUDA has its allocator's peak) and its cost is small against the arithmetic
    saved = SavedTensorBytes() if args.device == "cpu" and not args.tiny else NoCount()
    meter = Meter(device, args.ti_steps, saved, plain)
    breakdown = Breakdown(device) if getattr(args, "breakdown", False) else None   # (bench_engine has no such option)
    # --busy profiles the last two adapter iterations and the plain generations after them (left out of the times)
    busy = device_busy.BusyMeter.last_two(device, args.iterations) if getattr(args, "busy", False) else None
    if busy is not None and plain is not None:
        meter.plain = busy.timed("plain", plain)
    meter.start()
    with torch.inference_mode(), saved, (breakdown.installed() if breakdown else contextlib.nullcontext()), \
            (busy.around_training_sampler() if busy else contextlib.nullcontext()):
        train_identity(model, clip, vae, photo, face_analysis, name, "person", "{token} {class_word} smiling",
                       ti_steps=args.ti_steps, ti_learning_rate=1e-3, ti_batch_size=args.ti_batch_size,
                       sia_iterations=args.iterations, sia_learning_rate=1e-4, sia_rank=4, reg_lambda=1e-2,
                       frames=args.frames, width=args.size, height=args.size, sampling_steps=4, seed=0,
                       if_exists="overwrite", progress_hook=meter.hook, gradient_checkpointing=checkpointing,
                       precision=args.precision)
    meter.finish()
    profiled = busy.profiled["adapter"] if busy is not None else []
    shares = breakdown.means(meter.times["adapter"], leave_out=profiled) if breakdown else {}
    if busy is not None:   # the profiled iterations and plain runs ran slower: timed without them
        meter.leave_out("adapter", profiled, busy.profiled["plain"])
    return {"token": meter.per_step("token"), "adapter": meter.per_step("adapter"), "plain": meter.plain_per_run(),
            "peak": meter.peak, "saved_peak": meter.saved_peak, "breakdown": shares,
            "busy": busy,
            "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def cancel_delay(args, parts, stage):
    """Seconds from Cancel (pressed half a step into step 2 of ``stage``) to the run's end, and the step time."""
    import threading

    import comfy.model_management
    from comfyui_personalvideo.training.identity_training import train_identity

    model, clip, vae, face_analysis, photo = parts
    stamps, pressed = [], []

    def press():
        pressed.append(time.perf_counter())
        comfy.model_management.interrupt_current_processing(True)

    def hook(at, i, loss, similarity):
        if at != stage:
            return
        stamps.append(time.perf_counter())
        if i == 1 and not pressed:   # the third step starts now; the second took stamps[-1] - stamps[-2]
            threading.Timer((stamps[-1] - stamps[-2]) / 4, press).start()

    stamps.append(time.perf_counter())
    with torch.inference_mode():
        try:
            train_identity(model, clip, vae, photo, face_analysis, "bench_cancel", "person",
                           "{token} {class_word} smiling", ti_steps=max(args.ti_steps, 4) if stage == "token" else 1,
                           ti_batch_size=args.ti_batch_size, sia_iterations=max(args.iterations, 4),
                           frames=args.frames, width=args.size, height=args.size, seed=0, if_exists="overwrite",
                           checkpoint_every=0, resume=False, progress_hook=hook, precision=args.precision)
        except comfy.model_management.InterruptProcessingException:
            stopped = time.perf_counter()
            print(f"  {stage} stage: steps done in " + ", ".join(f"{b - a:.2f}" for a, b in zip(stamps, stamps[1:]))
                  + f" s (the first holds loading); Cancel pressed {pressed[0] - stamps[-1]:.2f} s into the next")
            return stopped - pressed[0], stamps[2] - stamps[1]
    comfy.model_management.interrupt_current_processing(False)
    raise SystemExit(f"the run ended before Cancel stopped it ({stage} stage): use more steps")


def report(args, label, r):
    gib = 1024 ** 3
    whole = 400 * r["token"] + 400 * r["adapter"]
    print(f"{label}:")
    print(f"  stage 1 (token, batch {args.ti_batch_size}, {args.size} px): {r['token']:.3f} s/step")
    print(f"  stage 2 (adapter, {args.frames} x {args.size} x {args.size}, 4 LCM steps): "
          f"{r['adapter']:.3f} s/iteration")
    print(f"  400 + 400 at these rates: {whole / 60:.1f} min")
    if r.get("plain") == r.get("plain"):   # not NaN
        print(f"  plain generation (KSampler 4 steps + VAE decode, no gradients): {r['plain']:.3f} s; "
              f"stage 2 / plain: {r['adapter'] / r['plain']:.2f}x")
    if r.get("breakdown"):
        b = r["breakdown"]
        print(f"  stage 2 breakdown (mean of the iterations after the first, {b['iteration']:.4f} s each):")
        for key, label in Breakdown.PARTS:
            print(f"    {label:<54} {b[key]:8.4f} s {100 * b[key] / b['iteration']:5.1f} %")
    if r.get("busy") is not None:
        device_busy.report(r["busy"], [("adapter", "stage-2 iteration"), ("plain", "plain generation")])
    if args.device == "cuda":
        for stage, value in r["peak"].items():
            print(f"  peak GPU memory, {stage} stage: {value / gib:.2f} GiB (torch.cuda.max_memory_allocated)")
    for stage, value in r["saved_peak"].items():
        if value is None:
            continue
        print(f"  peak bytes held for backward, {stage} stage (weights excluded): {value / gib:.3f} GiB")
    print(f"  peak RSS of the process so far: {r['rss'] / gib:.2f} GiB")


SD_VAE = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 2, 4, 4],
              num_res_blocks=2, attn_resolutions=[], dropout=0.0)
STAGE_SHAPES = {"stage 1 (token)": dict(batch=4, decode=False), "stage 2 (adapter)": dict(batch=16, decode=True)}


def fused_attention(q, k, v, heads, mask=None, **kwargs):
    """Attention as a GPU's fused kernels run it (PyTorch's flash kernel: no attention matrix is kept), the
    same operation on the CPU and on the meta device; ComfyUI's [batch, tokens, heads * dim] layout. ``mask``:
    an additive bias (T5's relative positions and padding), as the fused kernels take it."""
    b, _, inner = q.shape
    split = [t.reshape(b, -1, heads, inner // heads).transpose(1, 2) for t in (q, k, v)]
    # a strided last dimension is made contiguous first, as torch's public attention does before a fused kernel
    # (torch 2.15's CPU flash kernel gives NaN at random without it)
    split = [t if t.stride(-1) == 1 else t.contiguous() for t in split]
    out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(*split, attn_mask=mask)[0]
    return out.transpose(1, 2).reshape(b, -1, inner)


def _fused_vae_attention(q, k, v):
    """The VAE's attention as ComfyUI's ``pytorch_attention`` runs it: one head over the pixels, the inputs made
    contiguous first."""
    b, c, h, w = q.shape
    out = fused_attention(*(t.reshape(b, c, h * w).transpose(1, 2).contiguous() for t in (q, k, v)), heads=1)
    return out.transpose(1, 2).reshape(b, c, h, w)


def _sd15_parts(device, dtype, tiny=False):
    """The SD1.5 UNet and SD VAE on ``device`` (meta: no memory), with fused attention (a GPU's default), set for
    the whole host. ``tiny``: the tests' tiny UNet and VAE layouts instead."""
    import comfy.ldm.models.autoencoder
    import comfy.ldm.modules.attention as attention
    import comfy.model_base

    from pv_tools.random_models import initialise, sd15_model_config, sd15_unet_config
    from tiny_models import TINY_VAE_DDCONFIG

    attention.optimized_attention = attention.optimized_attention_masked = fused_attention
    unet = comfy.model_base.BaseModel(sd15_model_config(sd15_unet_config(full_size=not tiny)),
                                      device=device).diffusion_model
    with torch.device(device):
        vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=dict(TINY_VAE_DDCONFIG if tiny else SD_VAE),
                                                         embed_dim=4)
    for module in vae.modules():
        if callable(getattr(module, "optimized_attention", None)):
            module.optimized_attention = _fused_vae_attention
    if device != "meta":
        initialise(unet, 0)
        initialise(vae, 1)
    return unet.to(dtype).requires_grad_(False), vae.to(dtype).requires_grad_(False)


def _motion_modules(unet, frames):
    """An AnimateLCM-layout motion model (AnimateDiff-Evolved's own classes, as the tests' random motion model
    file) built on the meta device and inserted into ``unet`` where AnimateDiff-Evolved puts it, set to
    ``frames``; None when the host has no AnimateDiff-Evolved."""
    import full_models
    from pv_tools.random_models import animatelcm_layout

    if not full_models.has_animatediff_evolved():
        return None
    ad, sd, info = animatelcm_layout("AnimateLCM_meta.safetensors")
    with torch.device("meta"):
        motion = ad.AnimateDiffModel(sd, info).to(torch.float16).requires_grad_(False)
    motion._inject(unet.input_blocks, motion.down_blocks)
    motion._inject(unet.output_blocks, motion.up_blocks)
    if motion.mid_block is not None:
        motion._inject([unet.middle_block], [motion.mid_block])
    motion.set_video_length(frames, frames)
    for module in motion.modules():
        if callable(getattr(module, "actual_attention", None)):
            module.actual_attention = fused_attention
    return motion


def attach_adapter(diffusion_model, rank, device):
    """A rank-``rank`` SIA adapter on the model's targets (the UNet's spatial self-attention q/k/v, or every
    Wan block's ``self_attn`` q/k/v) with the pack's own forward and LoRA math, gate open, fp32 weights that
    require grad; returns the weights."""
    from comfyui_personalvideo.sia.families import discover
    from comfyui_personalvideo.sia.lora import CastWeights
    from comfyui_personalvideo.sia.patch import _make_forward

    weights = []
    for target in discover(diffusion_model).targets:
        layer = target.module
        down = torch.zeros(rank, layer.in_features, device=device, requires_grad=True)
        up = torch.zeros(layer.out_features, rank, device=device, requires_grad=True)
        layer.forward = _make_forward(layer, None, CastWeights(down, up), 1.0, lambda x: 1.0)
        weights += [down, up]
    return weights


def _step_inputs(batch, size, device, dtype, context_grad=False, context_dim=768):
    """A gradient step's latents, timesteps and text context at ``size`` px (random: only shapes matter here)."""
    side = size // 8
    x = torch.randn(batch, 4, side, side, device=device, dtype=dtype)
    context = torch.randn(batch, 77, context_dim, device=device, dtype=dtype).requires_grad_(context_grad)
    return x, torch.full((batch,), 250.0, device=device), context


def _context_dim(unet) -> int:
    """The width of the text context the UNet's cross-attention reads (768 for SD1.5)."""
    return next(m.to_k.in_features for name, m in unet.named_modules() if name.endswith("attn2"))


def _step_output(parts, x, steps, context, decode):
    """The UNet's output for the step and, for stage 2, one frame decoded from it."""
    unet, vae = parts[:2]
    out = unet(x, timesteps=steps, context=context)
    return vae.decode((x - out)[1:2] / 0.18215) if decode else out


def step_peak(parts, device, dtype, batch, size, decode, checkpointing, context_grad=False, frames=None,
              layers=None):
    """Peak bytes of the tensors one gradient step creates: the UNet over ``batch`` latents (cond and uncond)
    with gradient, (stage 2) decoding one frame with gradient, and backward; the weights (there before) not
    counted. ``context_grad``: the text context is what is trained (stage 1), else the adapter is. ``layers``: a
    list that gets the ``(layer, bytes)`` of each recomputation, as the trainer measures its first pass."""
    from autograd_memory import AllocationPeak

    tracker = AllocationPeak()
    measured = _gradient_step(parts, device, dtype, batch, size, decode, checkpointing, context_grad, tracker)
    if layers is not None:
        layers += measured
    return tracker.peak


def step_allocator_peak(parts, batch, size, decode, checkpointing, context_grad=False) -> int:
    """The same step on the CPU in fp32, its peak read from the CPU allocator itself (torch.profiler's memory
    events), to check the tracker's count against."""
    from autograd_memory import cpu_allocator_peak

    return cpu_allocator_peak(lambda: _gradient_step(parts, "cpu", torch.float32, batch, size, decode,
                                                     checkpointing, context_grad))


def _gradient_step(parts, device, dtype, batch, size, decode, checkpointing, context_grad, tracker=None):
    """One gradient step (see :func:`step_peak`), counted by ``tracker`` when given; the ``(layer, bytes)`` of
    each recomputation it measured (an empty list without a tracker)."""
    from comfyui_personalvideo.training.checkpointing import checkpointed, measuring, regions_of
    from comfyui_personalvideo.training.inference_tensors import gradient_window

    unet, vae = parts[:2]
    with torch.inference_mode(False):
        x, steps, context = _step_inputs(batch, size, device, dtype, context_grad, _context_dim(unet))
        with contextlib.ExitStack() as counted:
            measured = []
            if tracker is not None:
                counted.enter_context(tracker)
                measured = counted.enter_context(measuring(lambda: tracker.live))
            with gradient_window(unet, vae), torch.enable_grad(), \
                    checkpointed(regions_of(unet, vae if decode else None), checkpointing):
                out = _step_output(parts, x, steps, context, decode)   # held through backward, as the trainer holds it
                out.float().pow(2).mean().backward()
    return measured


def layer_flops(parts, device, dtype, batch, size, decode) -> dict:
    """Forward FLOPs of each checkpointing region in one call of the gradient step (what recomputing it
    costs, near enough), counted with torch's FLOP counter on ``device`` (meta: nothing computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    from comfyui_personalvideo.training.checkpointing import regions_of

    unet, vae = parts[:2]
    regions = regions_of(unet, vae if decode else None)
    flops, open_modes, handles = {}, {}, []

    def pre(module, args):
        mode = FlopCounterMode(display=False)
        mode.__enter__()
        open_modes[id(module)] = mode

    def post(module, args, output):
        mode = open_modes.pop(id(module))
        mode.__exit__(None, None, None)
        flops[module] = flops.get(module, 0) + mode.get_total_flops()

    for region in regions:
        handles += [region.register_forward_pre_hook(pre), region.register_forward_hook(post)]
    try:
        with torch.inference_mode(False), torch.no_grad():
            _step_output(parts, *_step_inputs(batch, size, device, dtype), decode)
    finally:
        for h in handles:
            h.remove()
    return flops


def partial_choices(parts, peak, layers, batch, size, decode, weights, cards=(12, 16, 24)):
    """What auto's choice does on cards of ``cards`` GB at the default settings, from the checkpointed step on
    the meta device (``peak`` and the ``layers`` :func:`step_peak` measured, as the trainer measures its first
    pass): the free memory taken as the card less the weights, the other models and 1 GiB of CUDA context and
    desktop, and the recomputation left (its share of the FLOPs of every checkpointed layer)."""
    from comfyui_personalvideo.training import checkpoint_choice

    gib = 1024 ** 3
    flops = layer_flops(parts, "meta", torch.float16, batch, size, decode)
    recomputed = {module for module, _ in layers}
    total = sum(flops.get(m, 0) for m in recomputed) or 1
    for card in cards:
        free = int((card - 1.0 - OTHER_MODELS_GIB) * gib) - weights
        choice = checkpoint_choice.CheckpointChoice("on", "meta", f"{card} GB card")
        choice.decide(0, peak, layers, free)
        left = sum(flops.get(m, 0) for m in recomputed if m not in choice.spared) / total
        grown, _ = choice.prediction
        adds = (f"a pass without it would add {grown / gib:.2f} GiB" if choice.mode == "on" else
                f"the pass adds {grown / gib:.2f} GiB")
        print(f"  a {card} GB card ({free / gib:.1f} GiB free): {choice.mode}"
              + (f", {len(choice.spared)} of {len(recomputed)} layers spared" if choice.mode == "partial" else "")
              + f"; {adds}; recomputation left {100 * left if choice.enabled else 0:.0f} % of checkpointing on's")


def _weights(*modules, dtype_bytes=2):
    return sum(p.numel() for m in modules if m is not None for p in m.parameters()) * dtype_bytes


def estimate(args):
    """Full-size peaks from the meta device at the default settings, and the small-size check (real CPU run
    vs meta run)."""
    from comfyui_personalvideo.training.sia_settings import SIATrainSettings, TRAINING_CFG

    gib = 1024 ** 3
    defaults = SIATrainSettings()
    frames, size, rank = defaults.frames, defaults.width, 4
    uncond = 2 if TRAINING_CFG > 1 else 1
    image = _sd15_parts("meta", torch.float16)
    video = _sd15_parts("meta", torch.float16)
    motion = _motion_modules(video[0], frames)
    adapter = attach_adapter(video[0], rank, "meta")
    weights = _weights(*video)   # the motion modules are inside the UNet now
    print(f"weights (fp16): UNet + VAE {_weights(*image) / gib:.2f} GiB, motion modules "
          + (f"{_weights(motion) / gib:.2f} GiB (AnimateLCM layout, AnimateDiff-Evolved's classes)" if motion
             else "not modelled (AnimateDiff-Evolved is not in this host: COMFYUI_ROOT=/path/to/ComfyUI with it)")
          + f"; adapter rank {rank}: {sum(p.numel() for p in adapter) * 4 / 2 ** 20:.1f} MiB fp32; CLIP-L text encoder "
          "0.23 GiB and the ResNet-100 face encoder 0.24 GiB (fp32) come on top")
    print(f"estimated peak of one gradient step at the default settings ({frames} frames of {size}x{size}, "
          f"cfg {TRAINING_CFG}: the UNet runs {uncond * frames} latents; fp16, fused attention):")
    adapter_stage = f"stage 2 (adapter, {frames} frames x {uncond}, + decode of one frame)"
    stages = {"stage 1 (token, 4 photos, no motion model)": (image, 4, False, True),
              adapter_stage: (video, frames * uncond, True, False)}
    results, measured = {}, {}   # measured: stage -> (peak, layers) of its checkpointed step
    for stage, (parts, batch, decode, context_grad) in stages.items():
        for ckpt in (True, False):
            layers = [] if ckpt else None
            peak = step_peak(parts, "meta", torch.float16, batch, size, decode, ckpt, context_grad, layers=layers)
            if ckpt:
                measured[stage] = (peak, layers)
            w = weights if parts is video else _weights(*image)
            results[(stage, ckpt)] = peak + w
            print(f"  {stage}, checkpointing {'on ' if ckpt else 'off'}: {peak / gib:6.2f} GiB activations, "
                  f"{(peak + w) / gib:6.2f} GiB with weights")
    print("auto's choice for stage 2 by card (free memory: the card less the weights, the other models and 1 GiB of "
          "CUDA context and desktop):")
    partial_choices(video, *measured[adapter_stage], frames * uncond, size, True, weights)
    on = results[(adapter_stage, True)] / gib + OTHER_MODELS_GIB
    print(f"stage 2 peak at the default settings, checkpointing on, with the CLIP-L text encoder and the face "
          f"encoder on the GPU too (+{OTHER_MODELS_GIB:.2f} GiB): {on:.2f} GiB; target at most {STAGE2_TARGET_GIB} "
          f"GiB: {'met' if on <= STAGE2_TARGET_GIB else 'NOT met'}")
    print(f"check at small size ({args.frames} frames / photos of {args.size} px, fp32): "
          "real CPU run vs meta-device run, same step, and the CPU allocator's own peak in the real run (it also "
          "holds the kernels' workspaces, which the count leaves out: convolution_backward's on the CPU)")
    real = _sd15_parts("cpu", torch.float32)
    meta32 = _sd15_parts("meta", torch.float32)
    for stage, shape in STAGE_SHAPES.items():
        for ckpt in (True, False):
            r = step_peak(real, "cpu", torch.float32, args.frames, args.size, shape["decode"], ckpt, True)
            m = step_peak(meta32, "meta", torch.float32, args.frames, args.size, shape["decode"], ckpt, True)
            a = step_allocator_peak(real, args.frames, args.size, shape["decode"], ckpt, True)
            print(f"  {stage}, checkpointing {'on ' if ckpt else 'off'}: measured {r / 2 ** 20:8.1f} MiB, "
                  f"estimated {m / 2 ** 20:8.1f} MiB (ratio {m / r:.3f}); CPU allocator {a / 2 ** 20:8.1f} MiB")


STAGE2_TARGET_GIB = 9   # README, docs and the doctor state it (tests/test_memory_figures.py keeps them in step)
OTHER_MODELS_GIB = 0.23 + 0.24   # CLIP-L text encoder (fp16) and the ResNet-100 face encoder (fp32)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="video and reference size in pixels")
    parser.add_argument("--ti-steps", type=int, default=3)
    parser.add_argument("--ti-batch-size", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16", "fp16"],
                        help="one set of figures each: auto (the model's own dtype where it is half precision; an "
                             "fp32 model: bf16/fp16 autocast on CUDA, fp32 on the CPU), fp32 (no autocast), bf16 "
                             "or fp16 (autocast to it)")
    parser.add_argument("--dtype", choices=sorted(bench_common.DTYPES), default=None,
                        help="with --tiny: the UNet's dtype, as ComfyUI's loader would give it (default fp32; bf16 "
                             "shows on the CPU what auto precision does with a half-precision model)")
    parser.add_argument("--estimate", action="store_true",
                        help="estimate the full-size peak memory per stage without a GPU (meta device), checked "
                             "against a real run at --frames/--size")
    parser.add_argument("--cancel", action="store_true",
                        help="measure how long Cancel takes to stop the run, in each stage")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print where a stage-2 iteration's time goes (steps without gradient, the "
                             "gradient step's forward, decode, identity loss, backward, the rest)")
    parser.add_argument("--busy", action="store_true",
                        help="also profile the last two stage-2 iterations and two plain generations "
                             "(torch.profiler): host operations each, and on CUDA the GPU's busy share, kernels and "
                             "the busiest ones; the times printed leave the profiled ones out (use at least 4 "
                             "iterations)")
    parser.add_argument("--compare", action="store_true",
                        help="also run without gradient checkpointing and in fp32, and print the ratios")
    parser.add_argument("--tiny", action="store_true",
                        help="the tests' tiny models instead of SD1.5 size (2 frames of 64x64 unless told)")
    parser.add_argument("--runs", type=int, default=1, help="train this many times per setting; medians and each run")
    parser.add_argument("--checkpointing", nargs="+", choices=["on", "off", "auto"], default=["on"],
                        help="gradient checkpointing forced on and/or off, or auto (one set of figures each)")
    parser.add_argument("--card-gib", type=float, default=None,
                        help="CUDA: auto's choice sees the free memory of a card of this size (the GPU's own "
                             "free memory less the GiB it has beyond it)")
    args = parser.parse_args()
    if args.card_gib is not None and args.device != "cuda":
        parser.error("--card-gib needs --device cuda: auto reads the free memory only from CUDA's allocator")

    bench_common.start_host(args.device)
    if args.card_gib is not None:
        card_size(args.card_gib)
    if args.estimate:
        with torch.inference_mode(False):
            estimate(args)
        return
    with tempfile.TemporaryDirectory(prefix="pv-bench-") as scratch:
        parts = build_tiny(args, scratch) if args.tiny else build(args, scratch)
        if args.cancel:
            first = argparse.Namespace(**dict(vars(args), precision=args.precision[0]))
            for stage in ("token", "adapter"):
                delay, step = cancel_delay(first, parts, stage)
                print(f"Cancel in the {stage} stage: the run stopped {delay:.2f} s after it was pressed; one "
                      f"{'step' if stage == 'token' else 'iteration'} takes {step:.2f} s (checking only between "
                      f"them would wait up to that); ratio {delay / step:.3f}")
            return
        modes = [{"on": True, "off": False, "auto": "auto"}[m] for m in args.checkpointing]
        card = f" (choice on a {args.card_gib:g} GB card)" if args.card_gib is not None else ""
        runs = [(f"checkpointing {ckpt if ckpt == 'auto' else 'on' if ckpt else 'off'}"
                 f"{card if ckpt == 'auto' else ''}, precision {precision}", ckpt, precision)
                for ckpt in modes for precision in args.precision]
        if args.compare:
            runs.append(("without checkpointing, fp32", False, "fp32"))
        from comfyui_personalvideo.training.sia_settings import TRAINING_CFG

        plain = plain_generation(args, parts)
        results = []
        for label, checkpointing, precision in runs:
            args_run = argparse.Namespace(**dict(vars(args), precision=precision))
            each = []
            for k in range(args.runs):
                result = run_once(args_run, parts, "bench_identity", checkpointing, plain)
                report(args_run, label + (f", run {k + 1} of {args.runs}" if args.runs > 1 else ""), result)
                each.append(result)
            results.append((label, each))
        unit = "CPU thread time" if args.device == "cpu" else "wall time"
        print(f"stage 2 iteration / plain generation (KSampler lcm + sgm_uniform, 4 steps, cfg {TRAINING_CFG}, "
              f"{args.frames} x {args.size} x {args.size}, + VAE decode, no gradients), {unit}:")
        for label, each in results:
            ratios = [r["adapter"] / r["plain"] for r in each]
            print(f"  {label}: median {statistics.median(ratios):.2f}x over {len(each)} run(s) ("
                  + ", ".join(f"{x:.2f}x" for x in ratios) + f"); iteration {statistics.median(r['adapter'] for r in each):.4f} s, "
                  f"plain {statistics.median(r['plain'] for r in each):.4f} s, "
                  f"token step {statistics.median(r['token'] for r in each):.4f} s")
        if args.compare:
            a, b = results[0][1][0], results[-1][1][0]
            print(f"ratios (savings on / off): stage 1 time {a['token'] / b['token']:.2f}x, "
                  f"stage 2 time {a['adapter'] / b['adapter']:.2f}x, "
                  "bytes held for backward " + ", ".join(
                      f"{k} {a['saved_peak'][k] / b['saved_peak'][k]:.3f}x" for k in a["saved_peak"]
                      if a["saved_peak"][k] is not None) + " (not counted with --tiny or on CUDA)")


if __name__ == "__main__":
    main()
