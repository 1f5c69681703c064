"""The Wan adapter and token stages' memory estimates (bench/wan_train_memory.py, printed by ``bench_wan_train.py
--estimate``) checked where a real run exists: at tiny size the meta-device count of the gradient step equals the
count of the same step run for real on the CPU, and that step holds what the Wan trainer's own iteration holds
(``train_wan_sia``, one iteration, counted by the same tracker). Skip on hosts without Wan."""
import sys
from pathlib import Path

import pytest
import torch

import wan_models

wan_models.skip_without_wan()

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import wan_train_memory as wm  # noqa: E402
from autograd_memory import AllocationPeak  # noqa: E402
from comfyui_personalvideo.training import prompts, wan_trainer  # noqa: E402
from comfyui_personalvideo.training.sia_settings import TRAINING_CFG  # noqa: E402

from face_fixtures import tiny_onnx  # noqa: E402,F401
from test_train_identity import face_analysis, photo  # noqa: E402,F401
from test_wan_training import TEMPLATES, loss_fn, wan, wan_vae  # noqa: E402,F401

FRAMES, SIZE = 5, 64


@pytest.fixture(scope="module")
def parts():
    return wm.wan_parts("tiny", "cpu", torch.float32), wm.wan_parts("tiny", "meta", torch.float32)


@pytest.mark.parametrize("checkpointing", [True, False], ids=["checkpointing-on", "checkpointing-off"])
def test_the_meta_device_count_equals_the_real_runs(parts, checkpointing):
    real, meta = parts
    measured = wm.step_peak(real, "cpu", torch.float32, FRAMES, SIZE, SIZE, checkpointing, TRAINING_CFG)
    estimated = wm.step_peak(meta, "meta", torch.float32, FRAMES, SIZE, SIZE, checkpointing, TRAINING_CFG)
    assert measured > 50 * 2 ** 20, measured   # the decode of one 64 px frame with gradient alone is more
    assert abs(estimated / measured - 1) < 0.005, (estimated, measured)


def test_the_estimate_grows_with_what_the_step_holds(parts):
    """More frames and a larger picture hold more; checkpointing holds less where the blocks' activations count."""
    meta = parts[1]

    def peak(frames, size, ckpt=True, cfg=TRAINING_CFG):
        return wm.step_peak(meta, "meta", torch.float32, frames, size, size, ckpt, cfg)

    assert peak(9, 64) > peak(5, 64) and peak(5, 96) > peak(5, 64)
    assert peak(5, 64, cfg=1.0) < peak(5, 64)   # cfg 1: no uncond in the batch
    # the diffusion model alone, where its blocks' activations outweigh what the step holds whatever the size
    model_only = {ckpt: wm.step_peak(meta, "meta", torch.float32, 17, 256, 256, ckpt, TRAINING_CFG, decode=False)
                  for ckpt in (True, False)}
    assert model_only[True] < 0.8 * model_only[False], model_only


@pytest.mark.parametrize("setting", ["on", "off"])
def test_the_estimated_step_holds_what_the_trainers_iteration_holds(parts, wan, wan_vae, loss_fn, setting):  # noqa: F811
    """One iteration of the real trainer at the estimate's shapes (cfg 1.5, the same tiny Wan and VAE sizes),
    counted by the same tracker: its peak is the estimated step's, within what the estimate leaves out (the
    face detector and encoder at 112 px, the sampler's few latents, AdamW's state of a rank-4 adapter)."""
    settings = wan_trainer.WanSIATrainSettings(iterations=1, frames=FRAMES, width=SIZE, height=SIZE, seed=11,
                                               cfg=TRAINING_CFG, gradient_checkpointing=setting)
    adapter = wan_trainer.new_wan_adapter(wan, seed=0)

    # the prompts' conditioning (umT5's length: core pads every prompt to 512 tokens) is made before the count
    # starts: encoded once per prompt and kept, it is an input to the step as the negative is, and the estimated
    # step has its context already too
    positive, negative = (wan_models.random_text_cond(seed, tokens=wm.UMT5_TOKENS) for seed in (12, 2))

    def encode(text):
        return positive

    tracker = AllocationPeak()
    with torch.inference_mode(), tracker:
        history = wan_trainer.train_wan_sia(wan, adapter, encode, negative, wan_vae, loss_fn,
                                            prompts.PromptSampler(TEMPLATES, 0), settings)
    assert history.loss[0] == history.loss[0], "no face: the iteration ran no backward"
    estimated = wm.step_peak(parts[1], "meta", torch.float32, FRAMES, SIZE, SIZE, setting == "on", TRAINING_CFG)
    # measured: 0.997x (on) and 0.998x (off), both lanes, in any order of the tests
    assert 0.95 * tracker.peak < estimated <= 1.05 * tracker.peak, (estimated, tracker.peak)


@pytest.fixture(scope="module")
def small_umt5():
    return {d: wm.umt5_xxl(d, torch.float32, config=wm.SMALL_UMT5) for d in ("cpu", "meta")}


@pytest.mark.parametrize("checkpointing", [True, False], ids=["checkpointing-on", "checkpointing-off"])
def test_the_token_steps_meta_count_equals_the_real_runs(parts, small_umt5, checkpointing):
    """The token stage's step (a prompt through core's umT5 class with gradient to its input, the tiny Wan over 4
    photo latents): the meta count is the real CPU run's."""
    measured = wm.token_step_peak(parts[0][0], small_umt5["cpu"], "cpu", torch.float32, 4, SIZE, SIZE, checkpointing)
    estimated = wm.token_step_peak(parts[1][0], small_umt5["meta"], "meta", torch.float32, 4, SIZE, SIZE,
                                   checkpointing)
    assert measured > 20 * 2 ** 20, measured
    assert abs(estimated / measured - 1) < 0.005, (estimated, measured)


def test_checkpointing_umt5s_layers_keeps_their_activations_out_of_the_token_step():
    """umT5 runs with gradient in the token stage: without checkpointing every layer's activations stay for
    backward (with an fp8 file also every layer's cast weights); with it only the layers' inputs do."""
    import comfy.ops

    wan_meta = wm.wan_parts("tiny", "meta", torch.float16)[0]
    fp8 = wm.umt5_xxl("meta", torch.float8_e4m3fn, comfy.ops.manual_cast, config=dict(wm.SMALL_UMT5, num_layers=12))
    on, off = (wm.token_step_peak(wan_meta, fp8, "meta", torch.float16, 4, SIZE, SIZE, c) for c in (True, False))
    cast_weights = sum(p.numel() for b in fp8.encoder.block for p in b.parameters()) * 2   # fp16 copies
    assert off - on > cast_weights * 0.9, (on, off, cast_weights)
