"""What the benchmarks share: one CPU thread unless told otherwise, the test helpers (host, tiny_models,
sampling, face_fixtures, random_adapters) importable, and for the sampling benchmarks the model arguments and
interleaved timing.

Importing this module sets the thread count, so import it before anything that starts torch's thread pool.
"""
import contextlib
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def add_model_arguments(parser, frames=1):
    """The arguments every sampling benchmark takes: model size, device, weight dtype, frames and picture size."""
    parser.add_argument("--full-size", action="store_true", help="SD1.5-size UNet instead of the small one")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto",
                        help="dtype of the UNet's weights and activations (auto: fp16 at full size on a GPU, "
                             "else fp32); the model is built in it, as ComfyUI's loader builds a checkpoint")
    parser.add_argument("--frames", type=int, default=frames)
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (latent is size/8)")
    parser.add_argument("--repeats", type=int, default=5)


def model_dtype(args) -> torch.dtype:
    """The dtype the arguments ask for (auto: fp16 at full size on a GPU, fp32 otherwise)."""
    if getattr(args, "dtype", "auto") == "auto":
        return torch.float16 if args.full_size and args.device != "cpu" else torch.float32
    return DTYPES[args.dtype]


def sd15_unet_model(full_size=False, dtype=torch.float32, device="cpu", seed=0):
    """A ModelPatcher around an SD1.5-layout UNet with random weights, built in ``dtype`` the way ComfyUI's
    checkpoint loader builds one (:func:`tiny_models.tiny_sd15_model`), then moved to ``device``."""
    import tiny_models

    patcher = tiny_models.tiny_sd15_model(seed=seed, full_size=full_size, dtype=dtype, load_device=device)
    patcher.model.to(torch.device(device))
    return patcher


def sd15_model(args):
    """Starts the test host and builds the SD1.5-layout MODEL the arguments ask for (``--dtype``; by default
    fp16 at full size on a GPU, fp32 otherwise)."""
    import host

    host.bootstrap(cpu=args.device == "cpu")
    return sd15_unet_model(full_size=args.full_size, dtype=model_dtype(args), device=args.device)


def clock(device):
    """The clock of a timing on ``device`` (a name or a torch.device): on the CPU this thread's CPU time (one
    torch thread, OMP_NUM_THREADS=1, so the work runs on it, and other processes on a shared machine do not
    count); on CUDA the wall clock, read once the GPU's queue is drained."""
    kind = torch.device(device).type
    if kind == "cuda":
        def now():
            torch.cuda.synchronize()
            return time.perf_counter()
        return now
    return time.thread_time if kind == "cpu" else time.perf_counter


def timed(fn, device):
    """Seconds one call of fn takes (:func:`clock`)."""
    now = clock(device)
    start = now()
    fn()
    return now() - start


def interleaved_seconds(runs, repeats, device):
    """{name: [seconds]} for {name: fn}: one warm-up call each (loading, patching, allocator), then the runs
    taken in turn, repeats times, so a slow spell of the machine falls on all of them alike."""
    for fn in runs.values():
        fn()
    seconds = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            seconds[name].append(timed(fn, device))
    return seconds


# A window no step of the benches' runs starts in (positions i/n; 0.61 is none of them for n = 4, 8, 20): the
# adapter is attached and the gate decides at every call, but stays closed.
GATE_WINDOWS = {"adapter, gate closed": (0.61, 0.61), "adapter, last quarter": (0.75, 1.0),
                "adapter, every step": (0.0, 1.0)}


def gated_models(model, adapter):
    """{name: MODEL} to time: the plain model and the adapter applied with each of :data:`GATE_WINDOWS`."""
    from comfyui_personalvideo.sia import apply_sia

    models = {"no adapter": model}
    models.update({name: apply_sia(model, adapter, 1.0, *window)[0] for name, window in GATE_WINDOWS.items()})
    return models


def print_ratio_table(results, base="no adapter"):
    """Print, for each step count, each run's median seconds, its ratio to ``base`` and how many steps it adapted:
    ``results`` is {steps: ({name: [seconds]}, {name: steps adapted})}."""
    for steps, (seconds, on) in results.items():
        print(f" {steps} steps:")
        for name, median, ratio in median_ratios(seconds, base):
            print(f"  {name:24s} {median:8.4f} s   ratio {ratio:.3f}x   ({on.get(name, 0)} of {steps} steps adapted)")


def median_ratios(seconds, base):
    """[(name, median seconds, ratio to the median of base)] in the order of seconds."""
    reference = statistics.median(seconds[base])
    return [(name, statistics.median(values), statistics.median(values) / reference)
            for name, values in seconds.items()]


@contextlib.contextmanager
def patched(*replacements):
    """Within the block each ``(owner, name, value)`` is set as ``owner.name``; afterwards every attribute is what
    it was, and one the owner did not hold itself (a module's instance ``forward``) is gone again (the benches wrap
    the trainer's own functions and models' layers this way to time or profile them)."""
    missing = object()
    saved = [(owner, name, owner.__dict__.get(name, missing)) for owner, name, _ in replacements]
    try:
        for owner, name, value in replacements:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in reversed(saved):
            if value is missing:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


def start_host(device):
    """Starts the test host for ``device`` (a name) and prints the line every trainer bench opens with."""
    import host

    host.bootstrap(cpu=device == "cpu")
    import comfy.model_management

    print(f"device {comfy.model_management.get_torch_device()}, torch {torch.__version__}, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, host {host.host_root()}")
