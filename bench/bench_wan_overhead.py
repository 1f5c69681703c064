"""Sampling time on core Wan with the identity adapter applied versus without, same model, same run.

    scripts/bench bench/bench_wan_overhead.py                      # Wan 2.1 1.3B size, random weights, CPU
    scripts/bench bench/bench_wan_overhead.py --wan-size tiny      # a tiny Wan model (seconds; plumbing only)
    scripts/bench bench/bench_wan_overhead.py --device cuda --frames 33 --size 480 --steps 20

Needs a host with core Wan (COMFYUI_ROOT=<modern ComfyUI>).  Builds core's Wan
model at the size asked (1.3B: 30 blocks of width 1536, 90 adapted layers; about
5.5 GB of fp32 weights on the CPU), random weights, and for each step count
prints seconds per sampling run (euler + simple, shift 8, cfg 1.5) for: no
adapter; the adapter with its gate closed on every step (its own cost: the wrapper
still decides at every model call); gated to the last quarter (the default); on
every step (the worst case); and their ratios to the un-adapted run.  Runs are
interleaved, the median of --repeats is taken.  Targets: gate closed 1.00x,
last quarter at most 1.01x.  On 2 CPU cores the default (1 frame of 64x64,
4 steps, 3 repeats) takes a few minutes.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common  # noqa: E402  (first: one thread, the test helpers importable)
import torch  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wan-size", default="1.3B", choices=["tiny", "1.3B", "ti2v_5B", "14B"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=1, help="video frames (latent frames: (frames - 1) // 4 + 1)")
    parser.add_argument("--size", type=int, default=64, help="width and height in pixels (latent is size/8)")
    parser.add_argument("--steps", type=int, nargs="+", default=[4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rank", type=int, default=4)
    args = parser.parse_args()

    import host

    host.bootstrap(cpu=args.device == "cpu")
    import comfy.samplers

    import wan_models
    from comfyui_personalvideo.sia.families import discover
    from comfyui_personalvideo.sia.gate import steps_on
    from pv_tools.random_wan_models import WAN_SIZES, wan_model_in_place

    if not wan_models.has_wan():
        sys.exit(wan_models.NO_WAN)
    with torch.inference_mode():
        model = wan_model_in_place(args.wan_size, seed=0, device=args.device)
        found = discover(model.model.diffusion_model)
        adapter = wan_models.random_wan_adapter(model, seed=0, rank=args.rank, alpha=float(args.rank), std=0.01)
        models = bench_common.gated_models(model, adapter)
        channels = WAN_SIZES[args.wan_size]["in_dim"]
        latent = wan_models.empty_wan_latent(args.frames, args.size, args.size, channels)["samples"].to(args.device)

        def run(m, steps):
            return lambda: wan_models.sample(m, "euler", "simple", steps, cfg=1.5, latent=latent)

        results = {}
        for steps in args.steps:
            schedule = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", steps)
            on = {name: len(steps_on(schedule, model.get_model_object("model_sampling"), *window))
                  for name, window in bench_common.GATE_WINDOWS.items()}
            seconds = bench_common.interleaved_seconds({name: run(m, steps) for name, m in models.items()},
                                                       args.repeats, args.device)
            results[steps] = (seconds, on)

    print(f"device {args.device}; Wan {args.wan_size} size (random weights, fp32 on the CPU); {found.summary()}")
    print(f"{args.frames} frame(s) {args.size}x{args.size} (latent {tuple(latent.shape)}), euler + simple, shift 8, "
          f"cfg 1.5, rank {args.rank}, median of {args.repeats}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    bench_common.print_ratio_table(results)


if __name__ == "__main__":
    main()
