"""Sampling time with a SIA adapter applied versus without, same model, same run.

    scripts/bench bench/bench_sia_overhead.py                 # small SD1.5-layout model, CPU
    scripts/bench bench/bench_sia_overhead.py --full-size     # SD1.5-size UNet (random weights)
    scripts/bench bench/bench_sia_overhead.py --full-size --device cuda --frames 16 --size 512

For each step count (--steps, default 4, 8 and 20) prints seconds per sampling run
for: no adapter; adapter with its gate closed on every step of the run (the gate's
own cost: it still decides at every model call); adapter gated to the last quarter
(the default); adapter on every step (the worst case); and their ratios to the
un-adapted run.  Runs are interleaved and the median of --repeats is taken.
Targets: gate closed 1.00x (nothing measurable); at most 1.03x for the last quarter
at SD1.5 size on a GPU.
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-size", action="store_true", help="SD1.5-size UNet instead of the small one")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (latent is size/8)")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 20])
    parser.add_argument("--scheduler", default="sgm_uniform")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rank", type=int, default=4)
    args = parser.parse_args()

    import host

    host.bootstrap(cpu=args.device == "cpu")
    import sampling
    import tiny_models
    from comfyui_personalvideo.sia import SIAAdapter, apply_sia, discover_targets
    from comfyui_personalvideo.sia.gate import steps_on

    with torch.inference_mode():
        model = tiny_models.tiny_sd15_model(full_size=args.full_size)
        if args.device != "cpu":
            model.model.to(args.device)
            model.load_device = torch.device(args.device)
            if args.full_size:
                model.model.to(torch.float16)
        found = discover_targets(model.model.diffusion_model)
        adapter = SIAAdapter.initialise(found.targets, rank=args.rank, seed=0)
        for p in adapter.paths:
            adapter.up[p] = torch.randn(adapter.up[p].shape) * 0.01
            adapter.down[p] = adapter.down[p].detach()
        # a window no step of these sgm_uniform runs starts in (positions i/n; 0.61 is none of them for
        # n = 4, 8, 20): the adapter is attached and the gate decides at every call, but stays closed
        closed = apply_sia(model, adapter, 1.0, 0.61, 0.61)[0]
        late = apply_sia(model, adapter, 1.0, 0.75)[0]
        every = apply_sia(model, adapter, 1.0, 0.0)[0]
        cond = tiny_models.random_cond(model, 1)
        uncond = tiny_models.random_cond(model, 2)
        runs = {"no adapter": model, "adapter, gate closed": closed, "adapter, last quarter": late,
                "adapter, every step": every}

        def run(m, steps):
            if args.device != "cpu":
                torch.cuda.synchronize()
            t = time.perf_counter()
            sampling.sample(m, cond, uncond, steps=steps, cfg=1.5, frames=args.frames, size=args.size,
                            scheduler=args.scheduler, sampler_name="euler")
            if args.device != "cpu":
                torch.cuda.synchronize()
            return time.perf_counter() - t

        results = {}
        for steps in args.steps:
            schedule = sampling.schedule(model, args.scheduler, steps)
            ms = model.object_patches.get("model_sampling", model.model.model_sampling)
            on = {name: len(steps_on(schedule, ms, *window)) for name, window in
                  (("adapter, gate closed", (0.61, 0.61)), ("adapter, last quarter", (0.75, 1.0)),
                   ("adapter, every step", (0.0, 1.0)))}
            times = {k: [] for k in runs}
            for m in runs.values():  # warm-up: loading, patching, allocator
                run(m, steps)
            for _ in range(args.repeats):
                for name, m in runs.items():
                    times[name].append(run(m, steps))
            results[steps] = (times, on)

    print(f"device {args.device}; UNet {'SD1.5 size' if args.full_size else 'small SD1.5 layout'}; "
          f"{found.summary()}")
    print(f"{args.frames} frame(s) {args.size}x{args.size}, euler + {args.scheduler}, cfg 1.5, rank {args.rank}, "
          f"median of {args.repeats}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    for steps, (times, on) in results.items():
        base = statistics.median(times["no adapter"])
        print(f" {steps} steps:")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"  {name:24s} {median:8.4f} s   ratio {median / base:.3f}x   "
                  f"({on.get(name, 0)} of {steps} steps adapted)")


if __name__ == "__main__":
    main()
