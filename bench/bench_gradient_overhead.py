"""What the pack's gradient machinery costs on top of the arithmetic: the trainer's gradient step (the UNet over
cond + uncond latents with the adapter on, one frame decoded, a loss on its pixels, backward) through the pack's
gradient window and checkpointing, against the same arithmetic in plain PyTorch.

    scripts/bench bench/bench_gradient_overhead.py                      # the tests' tiny UNet and VAE, CPU
    scripts/bench bench/bench_gradient_overhead.py --full-size --device cuda --dtype fp16 --frames 16 --size 512

Rows, each the median of ``--repeats`` runs taken in turn (same clock as the other benches: this thread's CPU
time on the CPU, wall time with the queue drained on CUDA):

- inference: the step's forward without gradient, in inference mode, as the sampling steps run;
- plain PyTorch: the step with gradient on a copy of the models with normal weights (what autograd itself
  costs; no window, no checkpointing). A node cannot do this: its models' weights are inference tensors;
- pack, checkpointing off / on: the step as the trainer runs it, on models loaded the way a node has them
  (inference weights), through ``gradient_window`` and ``checkpointed``;
- ideal checkpointing: inference + plain PyTorch, computed: a recomputation that costs exactly one forward with
  gradient and nothing else;
- torch's checkpointing: plain PyTorch with ``torch.utils.checkpoint`` (non-reentrant) around the same layers the
  pack checkpoints: what torch's own checkpointing costs on models a node cannot have (normal weights), a floor
  that can be reached, where the ideal cannot.

The pack's overhead is its row minus plain PyTorch (off) or minus ideal checkpointing (on). It is also printed
divided by a plain generation of the same latents timed here the same way (4 UNet calls without gradient and
the decode of every frame): points of a stage-2 / plain ratio. ``bench_train.py``'s plain generation also runs
the sampler and the host's own attention, so there the same milliseconds are somewhat fewer points. The bench
also checks that both sides computed the same thing: the adapter's gradients of the pack's runs against plain
PyTorch's.

The old host's transformer block adds into the input of its norms in place; the window hands those norms a copy,
and the plain PyTorch copy gets the same copies (hooks on its norms), so both sides do the same arithmetic. The
UNet runs fused attention (as on a GPU), no motion model. The plain PyTorch and checkpointing-off rows keep every
activation for backward: at 16 frames of 512x512 that takes a GPU of some 40 GB or more.
"""
import argparse
import functools
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common  # noqa: E402  (first: one thread, the test helpers importable)
import torch  # noqa: E402


def _models(args, dtype, inference: bool):
    """UNet and VAE with random weights (the same for both calls), the adapter attached with random weights;
    built in inference mode (``inference``: as a node loads them) or as normal tensors."""
    import bench_train

    mode = torch.inference_mode() if inference else torch.inference_mode(False)
    with mode:
        unet, vae = bench_train._sd15_parts(args.device, dtype, tiny=not args.full_size)
    with torch.inference_mode(False):
        weights = bench_train.attach_adapter(unet, args.rank, args.device)
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for w in weights:
                w.copy_(torch.randn(w.shape, generator=g) * 0.05)
    return unet, vae, weights


def _copy_norm_inputs(unet):
    """Hooks, kept for the run, that give the norms of every transformer block that adds into their input in place
    a copy of it, as the gradient window does (plain PyTorch's backward would refuse the modified input
    otherwise)."""
    from comfyui_personalvideo.training.inference_tensors import _NORMS, _clone_input

    for module in unet.modules():
        for name in _NORMS.get(type(module).__name__, ()):
            norm = module._modules.get(name)
            if norm is not None:
                norm.register_forward_pre_hook(_clone_input)


def _torch_checkpointed(regions):
    """A block within which each of ``regions`` runs under ``torch.utils.checkpoint`` when gradient is on (no
    random state kept: the layers draw none in eval mode)."""
    import torch.utils.checkpoint

    def wrapped(inner):
        def forward(*args, **kwargs):
            if not torch.is_grad_enabled():
                return inner(*args, **kwargs)
            return torch.utils.checkpoint.checkpoint(inner, *args, use_reentrant=False, preserve_rng_state=False,
                                                     **kwargs)
        return forward

    return bench_common.patched(*[(m, "forward", wrapped(m.__dict__.get("forward") or
                                                         functools.partial(type(m).forward, m))) for m in regions])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_common.add_model_arguments(parser, frames=2)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--cfg", type=float, default=1.5, help="above 1 the UNet runs cond + uncond latents")
    args = parser.parse_args()
    bench_common.start_host(args.device)
    import bench_train
    from comfyui_personalvideo.training.checkpointing import checkpointed, regions_of
    from comfyui_personalvideo.training.inference_tensors import gradient_window

    dtype = bench_common.model_dtype(args)
    node_unet, node_vae, node_weights = _models(args, dtype, inference=True)
    plain_unet, plain_vae, plain_weights = _models(args, dtype, inference=False)
    _copy_norm_inputs(plain_unet)
    batch = args.frames * (2 if args.cfg > 1 else 1)
    with torch.inference_mode(False):
        x, steps, context = bench_train._step_inputs(batch, args.size, args.device, dtype,
                                                     context_dim=bench_train._context_dim(node_unet))
    gradients = {}

    def step(unet, vae, weights, name):
        for w in weights:
            w.grad = None
        pixels = bench_train._step_output((unet, vae), x, steps, context, decode=True)
        pixels.float().pow(2).mean().backward()
        gradients[name] = [w.grad.detach().float().clone() for w in weights]

    def pack(on):
        regions = regions_of(node_unet, node_vae)

        def run():
            with torch.inference_mode():   # a node
                with gradient_window(node_unet, node_vae), checkpointed(regions, on):
                    step(node_unet, node_vae, node_weights, f"pack {'on' if on else 'off'}")
        return run

    def plain():
        with torch.inference_mode(False), torch.enable_grad():
            step(plain_unet, plain_vae, plain_weights, "plain")

    def torch_checkpointing():
        with torch.inference_mode(False), torch.enable_grad(), _torch_checkpointed(regions_of(plain_unet, plain_vae)):
            step(plain_unet, plain_vae, plain_weights, "torch's checkpointing")

    def inference():
        with torch.inference_mode():
            bench_train._step_output((node_unet, node_vae), x, steps, context, decode=True)

    def generation():
        with torch.inference_mode():
            for _ in range(4):
                out = node_unet(x, timesteps=steps, context=context)
            node_vae.decode(out[:args.frames])

    seconds = bench_common.interleaved_seconds({"inference": inference, "plain": plain, "pack off": pack(False),
                                                "pack on": pack(True), "torch ckpt": torch_checkpointing,
                                                "generation": generation},
                                               args.repeats, args.device)
    ms = {name: statistics.median(s) * 1e3 for name, s in seconds.items()}
    ms["ideal"] = ms["inference"] + ms["plain"]
    size = f"{'SD1.5-size' if args.full_size else 'tiny'} UNet and VAE, {batch} latents of {args.size // 8}x" \
           f"{args.size // 8} ({args.frames} frames{', cond + uncond' if batch > args.frames else ''}), one " \
           f"frame decoded, adapter rank {args.rank}, {args.device} {str(dtype).replace('torch.', '')}"
    print(f"gradient step, {size}; median of {args.repeats}:")
    rows = [("inference (no gradient, inference mode)", "inference", None),
            ("plain PyTorch with gradient (normal weights, no window)", "plain", None),
            ("ideal checkpointing (inference + plain PyTorch)", "ideal", None),
            ("pack, checkpointing off", "pack off", "plain"),
            ("torch.utils.checkpoint on the same layers (normal weights)", "torch ckpt", "ideal"),
            ("pack, checkpointing on", "pack on", "ideal")]
    for label, name, base in rows:
        extra = f"   +{ms[name] - ms[base]:7.2f} ms over {base}" if base else ""
        print(f"  {label:58s} {ms[name]:9.2f} ms{extra}")
    print(f"  {'plain generation (4 UNet calls, decode of every frame)':58s} {ms['generation']:9.2f} ms")
    for name, base in (("pack off", "plain"), ("pack on", "ideal")):
        print(f"{name}: the pack's overhead is {(ms[name] - ms[base]) / ms['generation']:.3f} of a plain generation "
              f"(points of the stage-2 / plain ratio)")
    print(f"pack on: {ms['pack on'] - ms['torch ckpt']:+.2f} ms against torch's checkpointing of the same layers")
    for name in ("pack off", "pack on", "torch's checkpointing"):
        want, got = gradients["plain"], gradients[name]
        num = sum(float((g - w).pow(2).sum()) for g, w in zip(got, want)) ** 0.5
        den = max(sum(float(w.pow(2).sum()) for w in want) ** 0.5, 1e-30)
        print(f"{name}: adapter gradients against plain PyTorch's: relative difference {num / den:.2e}")


if __name__ == "__main__":
    main()
