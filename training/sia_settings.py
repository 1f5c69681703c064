"""Stage 2's settings, its history and the weight-space regulariser, apart from the trainer.

Free of ComfyUI, so the diffusers engine (:mod:`..engine`) trains with the very same
settings class, defaults and metadata as the node (:mod:`.sia_trainer`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import TrainingError

# the training samples are made as the workflows generate: at this cfg, with this negative prompt
TRAINING_CFG = 1.5
NEGATIVE_PROMPT = "blurry, low quality, deformed face, watermark, text"


@dataclass
class SIATrainSettings:
    iterations: int = 400
    lr: float = 1e-4
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    reg_lambda: float = 1e-2
    steps: int = 4
    scheduler: str = "sgm_uniform"
    cfg: float = 1.0               # guidance of the training samples; the node's default matches the workflows
    frames: int = 16
    width: int = 512
    height: int = 512
    seed: int = 0
    max_no_face_fraction: float = 0.5
    no_face_check_after: int = 10
    early_stop: bool = False       # stop when the similarity plateaus (training.early_stop); off: the paper's count
    gradient_checkpointing: str = "auto"   # see training.checkpoint_choice: auto (by free memory), on, off
    precision: str = "auto"        # see training.precision: auto trains in the model's own dtype

    def check(self) -> None:
        if self.iterations < 1:
            raise TrainingError(f"sia_iterations must be at least 1 (got {self.iterations}).")
        if self.steps < 2:
            raise TrainingError(f"sampling_steps must be at least 2 (got {self.steps}): the adapter trains on "
                                "the last step of a few-step schedule (4 in the paper).")
        if self.frames < 1:
            raise TrainingError(f"frames must be at least 1 (got {self.frames}).")
        from . import precision as amp   # torch: not needed to read the defaults (the engine's --help)

        amp.check_choice(self.precision)
        from .checkpoint_choice import normalise

        self.gradient_checkpointing = normalise(self.gradient_checkpointing)
        if not (1.0 <= self.cfg <= 30.0):
            raise TrainingError(f"training_cfg must be between 1 and 30 (got {self.cfg}); use the cfg you generate "
                                "with (the workflows: 1.5).")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v < 64 or v % 8:
                raise TrainingError(f"{name} must be a multiple of 8 and at least 64 (got {v}).")

    def to_json(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class WanSIATrainSettings(SIATrainSettings):
    """Stage 2's settings with Wan's defaults (the rest as on SD1.5: the paper's lr, AdamW, lambda), for the node's
    trainer (:mod:`.wan_trainer`) and the engine's (:mod:`..engine.wan_train`)."""

    steps: int = 4
    scheduler: str = "simple"
    # 17 frames (5 latent frames) of 448x448: chosen as the largest size at 17 frames whose adapter stage fitted a
    # 12 GB card at 1.3B size (fp16 weights, umT5 in fp8, cfg 1.5, checkpointing on: 480x480 read 12.41 GiB when
    # the VAE decoder was not checkpointed); now an estimated 10.28 GiB with everything resident (480x480: 10.56),
    # kept until a GPU has measured a larger one. Figures and method: docs/wan.md, bench_wan_train.py --estimate.
    frames: int = 17
    width: int = 448
    height: int = 448

    def check(self) -> None:
        super().check()
        check_wan_video(self.frames, self.width, self.height)


def check_wan_video(frames: int, width: int, height: int) -> None:
    """A video size Wan makes: 4k + 1 frames, sides multiples of 16 (training here, generation in the engine)."""
    if (frames - 1) % 4:
        raise TrainingError(f"frames must be 4k + 1 on Wan (1, 5, 9, 13, 17, ...; got {frames}): Wan's VAE makes "
                            "one frame and then 4 per latent frame.")
    for name, v in (("width", width), ("height", height)):
        if v % 16:
            raise TrainingError(f"{name} must be a multiple of 16 on Wan (got {v}).")


@dataclass
class SIAHistory:
    loss: list = field(default_factory=list)          # identity + regulariser per iteration (NaN: skipped)
    similarity: list = field(default_factory=list)    # face similarity of the trained frame (NaN: no face)
    skipped: int = 0
    last_latent: torch.Tensor | None = None           # final latent of the last iteration (all frames)
    precision: str = "fp32"                           # what the gradient passes ran at
    early_stop: dict | None = None                    # the rule and stopped_at, when early stop was on
    smoothed: list = field(default_factory=list)      # the early stop's smoothed similarity per iteration
    snapshots: list = field(default_factory=list)     # (iteration, trained frame [1, 3, H, W] 0..1 on the CPU)


def flat_copy(params):
    """The adapter's starting point for :func:`reg_term`: a detached copy of its tensors as one flat vector, made
    once before the first iteration."""
    import torch

    if not params:
        return torch.zeros(0)
    return torch.cat([p.detach().reshape(-1) for p in params])   # cat makes a new tensor: a copy


def reg_term(params, initial):
    """The weight-space regulariser ||theta - theta_0||^2 over the adapter's tensors, taken over them as one flat
    vector against ``initial`` (:func:`flat_copy` of the starting tensors): a few operations, forward and
    backward, whatever the number of tensors (a term per tensor cost some ten each, about 700 per iteration for
    SD1.5's 96 LoRA tensors: launches on a GPU, milliseconds on the CPU). The gradient, 2 (theta - theta_0), is
    the same elementwise; only the value's summation order differs."""
    import torch

    if not params:
        return torch.zeros(())
    flat = torch.cat([p.reshape(-1) for p in params])
    if initial.shape != flat.shape:
        raise ValueError(f"internal: the starting copy has {initial.numel()} values, the adapter {flat.numel()}")
    return ((flat - initial) ** 2).sum()


FUSED_ADAMW_DEVICES = ("cuda", "cpu")


def adapter_optimizer(params, settings):
    """Stage 2's AdamW over the adapter's tensors, with torch's fused update on CUDA and the CPU (torch 2.4 on):
    one kernel for all the tensors, and under the fp16 gradient scaler no separate unscaling pass. On other
    devices (MPS, XPU, DirectML, whose fused kernels vary with the torch build) the multi-tensor (foreach)
    update, which torch picks by itself only on CUDA; without it the update goes tensor by tensor in Python. The
    same update rule either way."""
    import torch

    params = list(params)
    options = dict(lr=settings.lr, betas=tuple(settings.betas), eps=settings.eps, weight_decay=settings.weight_decay)
    if params and params[0].device.type in FUSED_ADAMW_DEVICES:
        try:
            return torch.optim.AdamW(params, fused=True, **options)
        except RuntimeError:   # an older torch without the CPU kernel says so when the optimiser is made
            pass
    return torch.optim.AdamW(params, foreach=True, **options)
