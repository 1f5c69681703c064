"""What the benchmarks share: one CPU thread unless told otherwise, the test helpers (host, tiny_models,
sampling, face_fixtures, random_adapters) importable, and for the sampling benchmarks the model arguments and
interleaved timing.

Importing this module sets the thread count, so import it before anything that starts torch's thread pool.
"""
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def add_model_arguments(parser, frames=1):
    """The arguments every sampling benchmark takes: model size, device, frames and picture size."""
    parser.add_argument("--full-size", action="store_true", help="SD1.5-size UNet instead of the small one")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=frames)
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (latent is size/8)")
    parser.add_argument("--repeats", type=int, default=5)


def sd15_model(args):
    """Starts the test host and builds the SD1.5-layout MODEL the arguments ask for (fp16 at full size on a GPU)."""
    import host

    host.bootstrap(cpu=args.device == "cpu")
    import tiny_models

    model = tiny_models.tiny_sd15_model(full_size=args.full_size)
    if args.device != "cpu":
        model.load_device = torch.device(args.device)
        model.model.to(args.device, torch.float16 if args.full_size else torch.float32)
    return model


def timed(fn, device):
    """Seconds one call of fn takes, with the GPU's queue drained before and after."""
    if device != "cpu":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - start


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


def median_ratios(seconds, base):
    """[(name, median seconds, ratio to the median of base)] in the order of seconds."""
    reference = statistics.median(seconds[base])
    return [(name, statistics.median(values), statistics.median(values) / reference)
            for name, values in seconds.items()]
