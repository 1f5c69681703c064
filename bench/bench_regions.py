"""Sampling time with two region adapters (two masks, two identities) versus one whole-picture adapter and
versus none, same model, same run.

    scripts/bench bench/bench_regions.py                  # small SD1.5-layout model, CPU
    scripts/bench bench/bench_regions.py --full-size --device cuda --frames 16 --size 512

Prints seconds per sampling run (median of --repeats, runs interleaved) and ratios to the un-adapted run for:
no adapter; one adapter on the whole picture; two adapters in complementary halves; two adapters in two boxes
with a gap between them (one more attention: the plain one for the gap). All in the last quarter of the steps.
In the adapted steps each region with tokens costs one more self-attention per block; the other steps cost
nothing extra, so the whole-run ratio stays close to 1 + (adapted steps / steps) x (attention's share).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common  # noqa: E402  (first: one thread, the test helpers importable)
import torch  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_common.add_model_arguments(parser, frames=2)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    with torch.inference_mode():
        model = bench_common.sd15_model(args)
        import random_adapters
        import sampling
        import tiny_models
        from comfyui_personalvideo.regions.simple import box_mask, halves
        from comfyui_personalvideo.sia import apply_sia

        adapters = [random_adapters.random_adapter(model, seed=seed, std=0.01) for seed in (0, 1)]
        left, right = halves(args.size, args.size)
        box_a = box_mask(args.size, args.size, 0.0, 0.0, 0.4, 1.0)
        box_b = box_mask(args.size, args.size, 0.6, 0.0, 0.4, 1.0)

        def two(mask_a, mask_b):
            first = apply_sia(model, adapters[0], 1.0, 0.75, mask=mask_a)[0]
            return apply_sia(first, adapters[1], 1.0, 0.75, mask=mask_b)[0]

        models = {"no adapter": model, "one adapter, whole picture": apply_sia(model, adapters[0], 1.0, 0.75)[0],
                  "two adapters, two halves": two(left, right), "two adapters, two boxes": two(box_a, box_b)}
        cond, uncond = tiny_models.random_cond(model, 1), tiny_models.random_cond(model, 2)

        def run(m):
            return lambda: sampling.sample(m, cond, uncond, steps=args.steps, cfg=1.5, frames=args.frames,
                                           size=args.size)

        seconds = bench_common.interleaved_seconds({name: run(m) for name, m in models.items()}, args.repeats,
                                                   args.device)

    print(f"device {args.device}; UNet {'SD1.5 size' if args.full_size else 'small SD1.5 layout'}; "
          f"{args.frames} frame(s) {args.size}x{args.size}, {args.steps} lcm steps (last quarter adapted), cfg 1.5, "
          f"median of {args.repeats}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    for name, median, ratio in bench_common.median_ratios(seconds, "no adapter"):
        print(f"  {name:28s} {median:8.4f} s   ratio {ratio:.3f}x")


if __name__ == "__main__":
    main()
