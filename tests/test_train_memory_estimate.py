"""The SD1.5 memory estimate (``bench/bench_train.py --estimate``, the README's figure) is what the trainer holds:
the estimated step on the meta device against one real iteration of the adapter stage, on the tests' tiny UNet
and VAE, both counted by the same allocation tracker."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import bench_train  # noqa: E402
from autograd_memory import AllocationPeak  # noqa: E402
from comfyui_personalvideo.training.sia_settings import TRAINING_CFG  # noqa: E402
from face_fixtures import tiny_onnx  # noqa: E402,F401
from test_train_core import new_adapter, run_sia, setup  # noqa: E402,F401
from test_train_identity import face_analysis, parts, photo  # noqa: E402,F401
from test_train_memory import use_attention_functions  # noqa: E402

pytestmark = pytest.mark.usefixtures("ample_free_memory")

FRAMES, SIZE = 2, 256   # frames large enough that the UNet and VAE decide the peak, as at full size


@pytest.fixture
def fused_attention(monkeypatch, setup):  # noqa: F811
    """The estimate's attention (PyTorch's fused kernel, as on a GPU) for the real models too, put back after."""
    use_attention_functions(monkeypatch, bench_train.fused_attention, bench_train._fused_vae_attention,
                            setup[0].model.diffusion_model, setup[2].first_stage_model)


@pytest.mark.parametrize("checkpointing", ["on", "off"])
def test_the_estimated_step_holds_what_the_trainers_iteration_holds(setup, fused_attention, checkpointing):  # noqa: F811
    model = setup[0]
    adapter = new_adapter(model)
    tracker = AllocationPeak()
    with tracker:
        history = run_sia(setup, adapter, frames=FRAMES, width=SIZE, height=SIZE, cfg=TRAINING_CFG,
                          gradient_checkpointing=checkpointing)
    assert history.loss[0] == history.loss[0], "no face: the iteration ran no backward"

    meta = bench_train._sd15_parts("meta", torch.float32, tiny=True)
    bench_train.attach_adapter(meta[0], 4, "meta")
    batch = FRAMES * (2 if TRAINING_CFG > 1 else 1)
    estimated = bench_train.step_peak(meta, "meta", torch.float32, batch, SIZE, True, checkpointing == "on")
    assert estimated > 4 * 2 ** 20, estimated
    # measured: 0.994x (on) and 0.998x (off); what the estimate leaves out is the face encoder's backward on its
    # 112 px crop, a peak of its own some 6 MB high, which is why the frames are 256 px here (at 64 px that is
    # the trainer's peak; at full size it is far below the UNet's)
    assert 0.95 * tracker.peak < estimated <= 1.05 * tracker.peak, (estimated, tracker.peak)
