"""Sampling time with a SIA adapter applied versus without, same model, same run.

    scripts/bench bench/bench_sia_overhead.py                 # small SD1.5-layout model, CPU
    scripts/bench bench/bench_sia_overhead.py --full-size     # SD1.5-size UNet (random weights)
    scripts/bench bench/bench_sia_overhead.py --full-size --device cuda --frames 16 --size 512
    scripts/bench bench/bench_sia_overhead.py --dtype fp16    # fp16 weights on the CPU (what the tests check)

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
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common  # noqa: E402  (first: one thread, the test helpers importable)
import torch  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_common.add_model_arguments(parser, frames=1)
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 20])
    parser.add_argument("--scheduler", default="sgm_uniform")
    parser.add_argument("--rank", type=int, default=4)
    args = parser.parse_args()

    with torch.inference_mode():
        model = bench_common.sd15_model(args)
        import random_adapters
        import sampling
        import tiny_models
        from comfyui_personalvideo.sia import discover_targets
        from comfyui_personalvideo.sia.gate import steps_on

        found = discover_targets(model.model.diffusion_model)
        adapter = random_adapters.random_adapter(model, seed=0, rank=args.rank, alpha=float(args.rank), std=0.01)
        models = bench_common.gated_models(model, adapter)
        cond = tiny_models.random_cond(model, 1)
        uncond = tiny_models.random_cond(model, 2)

        def run(m, steps):
            return lambda: sampling.sample(m, cond, uncond, steps=steps, cfg=1.5, frames=args.frames,
                                           size=args.size, scheduler=args.scheduler, sampler_name="euler")

        results = {}
        for steps in args.steps:
            schedule = sampling.schedule(model, args.scheduler, steps)
            ms = model.object_patches.get("model_sampling", model.model.model_sampling)
            on = {name: len(steps_on(schedule, ms, *window)) for name, window in bench_common.GATE_WINDOWS.items()}
            seconds = bench_common.interleaved_seconds({name: run(m, steps) for name, m in models.items()},
                                                       args.repeats, args.device)
            results[steps] = (seconds, on)

    print(f"device {args.device}; UNet {'SD1.5 size' if args.full_size else 'small SD1.5 layout'}; "
          f"{found.summary()}; weights {str(bench_common.model_dtype(args)).replace('torch.', '')}")
    print(f"{args.frames} frame(s) {args.size}x{args.size}, euler + {args.scheduler}, cfg 1.5, rank {args.rank}, "
          f"median of {args.repeats}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    bench_common.print_ratio_table(results)


if __name__ == "__main__":
    main()
