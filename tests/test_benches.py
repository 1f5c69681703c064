"""The benchmarks under bench/ run: each is started the way a user starts it, at its smallest size on the CPU.

They print figures and are never timed here (speed targets are checked by running them by hand); what is
checked is that they run to the end on the configurations they offer, so a crash such as fp16 weights
meeting fp32 activations ("mat1 and mat2 must have the same dtype" in the UNet's time_embed) cannot
come back unseen.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench"


def run_bench(script, *args, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, str(BENCH / script), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=str(BENCH.parent))
    assert done.returncode == 0, f"{script} {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_sia_overhead_bench_runs_with_half_precision_weights(dtype):
    out = run_bench("bench_sia_overhead.py", "--dtype", dtype, "--steps", "4", "--repeats", "1", "--size", "32")
    name = {"fp16": "float16", "bf16": "bfloat16"}[dtype]
    assert f"weights {name}" in out
    rows = [line for line in out.splitlines() if "ratio" in line]
    assert [r.split()[0] for r in rows] == ["no", "adapter,", "adapter,", "adapter,"], out


def test_half_precision_builder_tells_the_model_its_dtype():
    """The bench's builder makes the UNet in fp16 as ComfyUI's loader does: weights and the model's dtype
    agree, and a sampling run with an adapter on every step works."""
    sys.path.insert(0, str(BENCH))
    import bench_common
    import random_adapters
    import sampling
    import tiny_models
    from comfyui_personalvideo.sia import apply_sia

    with torch.inference_mode():
        model = bench_common.sd15_unet_model(dtype=torch.float16)
        assert model.model.get_dtype() == torch.float16
        assert {p.dtype for p in model.model.diffusion_model.parameters()} == {torch.float16}
        adapter = random_adapters.random_adapter(model, seed=0, rank=4, alpha=4.0, std=0.01)
        patched = apply_sia(model, adapter, 1.0, 0.0, 1.0)[0]
        out, _ = sampling.sample(patched, tiny_models.random_cond(model, 1), tiny_models.random_cond(model, 2),
                                 steps=2, cfg=1.5, size=32, sampler_name="euler")
    assert torch.isfinite(out).all()


def host_operations(out, names):
    """The host operations ``--busy`` printed for each of ``names``."""
    return {name: int(out.split(f"    {name}: ")[1].split(" host operations")[0].split()[-1]) for name in names}


def test_wan_train_bench_runs_and_prints_the_ratio():
    """The Wan adapter-stage bench at its smallest: 4 iterations of the tiny Wan model, 1 frame of 64x64, with
    --busy (the last two profiled and left out of the times)."""
    import wan_models

    if not wan_models.has_wan():
        pytest.skip(wan_models.NO_WAN)
    out = run_bench("bench_wan_train.py", "--iterations", "4", "--frames", "1", "--busy")
    assert "adapter iteration / plain generation" in out, out
    assert "checkpointing on: median" in out and "x over 1 run(s)" in out, out
    assert "nan" not in out.split("checkpointing on: median")[1].splitlines()[0], out   # some iterations timed
    operations = host_operations(out, ("adapter iteration", "plain generation"))
    assert operations["adapter iteration"] > operations["plain generation"] > 0, out


@pytest.mark.slow   # CI time: a bench run, as the engine bench's below; the pinned lane runs it
def test_train_bench_breakdown_times_every_part_of_an_iteration():
    """bench_train.py --breakdown --busy on the tiny models: the trainer functions the breakdown wraps are the
    ones stage 2 calls (each part took time), and the parts leave little unaccounted for (a wrapper that missed
    its function or counted a call twice would show as a large or negative rest), with the iterations --busy
    profiled left out; --busy profiled stage-2 iterations and plain generations (an iteration, with its
    backward, dispatches more operations than a generation without gradients)."""
    out = run_bench("bench_train.py", "--tiny", "--iterations", "6", "--ti-steps", "2", "--checkpointing", "off",
                    "--breakdown", "--busy")
    assert "stage 2 / plain:" in out, out
    rows = [row.strip().rsplit(None, 4) for row in out.split("stage 2 breakdown")[1].splitlines()[1:8]]
    seconds = {name: float(value) for name, value, _, _, _ in rows}   # "<label> <seconds> s <share> %"
    shares = {name: float(share) for name, _, _, share, _ in rows}
    measured = ["sampling steps without gradient", "gradient step: the model's forward",
                "gradient step: decode of the trained frame", "identity loss: detection, crop, recogniser",
                "backward and the optimiser step"]
    assert all(seconds[name] > 0 for name in measured), out
    rests = ["rest of the gradient step (regulariser, ...)", "rest of the iteration (prompt, noise, sampler set-up)"]
    assert all(-0.5 <= shares[name] <= 10 for name in rests), out
    assert "busy (torch.profiler; mean of 2 profiled stretch(es) each" in out, out
    operations = host_operations(out, ("stage-2 iteration", "plain generation"))
    assert operations["stage-2 iteration"] > operations["plain generation"] > 0, out


def test_gradient_overhead_bench_compares_the_same_arithmetic():
    """bench_gradient_overhead.py on the tiny models: it prints every row, and the pack's gradient step with
    checkpointing off and on gives the adapter the gradients plain PyTorch gives it on normal copies of the same
    weights (so its overhead figures compare like with like), and so does torch's own checkpointing of the same
    layers, the row that tells what checkpointing itself costs."""
    out = run_bench("bench_gradient_overhead.py", "--repeats", "1")
    for label in ("inference (no gradient, inference mode)", "plain PyTorch with gradient", "ideal checkpointing",
                  "pack, checkpointing off", "torch.utils.checkpoint on the same layers", "pack, checkpointing on",
                  "plain generation", "against torch's checkpointing of the same layers"):
        assert label in out, out
    differences = {line.split(":")[0]: float(line.rsplit(None, 1)[1]) for line in out.splitlines()
                   if "adapter gradients against plain PyTorch's" in line}
    assert differences.keys() == {"pack off", "pack on", "torch's checkpointing"}, out
    assert all(d < 1e-4 for d in differences.values()), out


@pytest.mark.slow   # CI time: the pinned lane runs it; the newest lane's engine tests cover the same engine code
def test_engine_bench_runs_and_prints_the_ratio():
    """The engine-against-node bench on the tiny models (it had crashed before its first figure: the node's
    side asked for an option only bench_train.py has), with --busy: both sides' last two iterations profiled
    (left out of the times) and their host operations compared."""
    out = run_bench("bench_engine.py", "--tiny", "--iterations", "4", "--ti-steps", "2", "--busy")
    assert "ratio engine / node: stage 2" in out and "nan" not in out.split("ratio engine / node")[1], out
    node, engine = (host_operations(part, ("stage-2 iteration",))["stage-2 iteration"]
                    for part in out.split("engine (diffusers + peft):\n")[-2:])
    assert node > 0 and engine > 0, out
    ratio = float(out.split("host operations per stage-2 iteration, engine / node: ")[1].split("x")[0])
    assert ratio == pytest.approx(engine / node, abs=0.006), out
