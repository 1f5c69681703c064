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
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (latent is size/8)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import host

    host.bootstrap(cpu=args.device == "cpu")
    import sampling
    import tiny_models
    from comfyui_personalvideo.regions.simple import box_mask, halves
    from comfyui_personalvideo.sia import SIAAdapter, apply_sia, discover_targets

    def small_random_adapter(targets, seed):
        adapter = SIAAdapter.initialise(targets, rank=4, seed=seed)
        generator = torch.Generator().manual_seed(seed)
        adapter.up = {p: torch.randn(t.shape, generator=generator) * 0.01 for p, t in adapter.up.items()}
        adapter.down = {p: t.detach() for p, t in adapter.down.items()}
        return adapter

    with torch.inference_mode():
        model = tiny_models.tiny_sd15_model(full_size=args.full_size)
        if args.device != "cpu":
            model.load_device = torch.device(args.device)
            model.model.to(args.device, torch.float16 if args.full_size else torch.float32)
        targets = discover_targets(model.model.diffusion_model).targets
        adapters = [small_random_adapter(targets, seed) for seed in (0, 1)]
        left, right = halves(args.size, args.size)
        box_a = box_mask(args.size, args.size, 0.0, 0.0, 0.4, 1.0)
        box_b = box_mask(args.size, args.size, 0.6, 0.0, 0.4, 1.0)

        def two(mask_a, mask_b):
            first = apply_sia(model, adapters[0], 1.0, 0.75, mask=mask_a)[0]
            return apply_sia(first, adapters[1], 1.0, 0.75, mask=mask_b)[0]

        runs = {"no adapter": model, "one adapter, whole picture": apply_sia(model, adapters[0], 1.0, 0.75)[0],
                "two adapters, two halves": two(left, right), "two adapters, two boxes": two(box_a, box_b)}
        cond, uncond = tiny_models.random_cond(model, 1), tiny_models.random_cond(model, 2)

        def run(m):
            if args.device != "cpu":
                torch.cuda.synchronize()
            t = time.perf_counter()
            sampling.sample(m, cond, uncond, steps=args.steps, cfg=1.5, frames=args.frames, size=args.size)
            if args.device != "cpu":
                torch.cuda.synchronize()
            return time.perf_counter() - t

        times = {k: [] for k in runs}
        for m in runs.values():     # warm-up
            run(m)
        for _ in range(args.repeats):
            for name, m in runs.items():
                times[name].append(run(m))

    print(f"device {args.device}; UNet {'SD1.5 size' if args.full_size else 'small SD1.5 layout'}; "
          f"{args.frames} frame(s) {args.size}x{args.size}, {args.steps} lcm steps (last quarter adapted), cfg 1.5, "
          f"median of {args.repeats}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    base = statistics.median(times["no adapter"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:28s} {median:8.4f} s   ratio {median / base:.3f}x")


if __name__ == "__main__":
    main()
