"""Stage 2 on core Wan 2.1 / 2.2: the Spatial Identity Adapter trained on the very Wan model it is applied to.

The loop is the SD1.5 trainer's (:func:`.sia_trainer.train_sia`: simulated prompts, pure noise, a few
steps through core sampling with no gradient but in the last step and the adapter only there, the ArcFace
identity loss plus the weight-space regulariser, AdamW, the seed's named streams, Cancel before every
layer, checkpoints, resume, the no-face stop); :class:`WanBackbone` gives what differs on Wan:

- **Sampling**: flow matching, ``steps`` (4) Euler steps on the ``simple`` schedule of the model's own
  sampling, so at the shift the MODEL carries (core's Wan default 8, or what ModelSamplingSD3 set). Euler
  is deterministic: no noise is drawn between steps. Without a distillation LoRA 4 steps make a blurry,
  unfinished video; that is the honest default for training the last step's identity (the adapter acts in
  the last step only, where the layout is settled), not a claim about the picture.
- **Latents**: one video latent ``[1, C, (frames - 1) // 4 + 1, H / s, W / s]`` (C and s from the model's
  latent format: 16 and 8 for Wan 2.1 and the A14B experts, 48 and 16 for TI2V 5B); ``frames`` must be
  4k + 1, as Wan makes them.
- **Decode: the first latent frame alone, giving the first video frame.** Wan's VAE is causal in time: it
  decodes latent frame 0 into video frame 0 before it looks at any later latent frame, and each later latent
  frame into 4 video frames using a cache of the frames before. Decoding ``latent[:, :, :1]`` therefore gives
  exactly the full decode's first frame, with the exact gradient, at the cost of one latent frame through
  the decoder (the cheapest decode there is, in time and memory). Any other frame ``i`` would need the
  latent frames ``0 .. 1 + (i - 1) // 4`` decoded with gradient (exact), or the earlier ones decoded without
  gradient to fill the cache (exact pixels, but the gradient through the cache lost). So the identity loss
  sees the first frame of every training clip (the paper draws a random frame): the adapter is one per-token
  map shared by every frame, and Wan's self-attention joins all frames, so the gradient still reaches the
  q/k/v of every frame's tokens; whether a random later frame trains better is not measured.
- **Cancel and checkpointing**: Cancel is looked at before each Wan attention block and each layer of the
  VAE decoder; gradient checkpointing (when chosen) covers the Wan blocks and the VAE decoder's middle and
  up-sampling layers (their causal feature cache is given to each recomputation as the forward found it).

Wan 2.2 A14B: train on the **low-noise expert**, the model the adapter is applied to: the gate's last
quarter lies entirely in its steps (docs/wan.md). The trainer trains on the MODEL it is given.

Gradients reach the adapter only; the user's MODEL and VAE are unchanged (the adapter goes on a clone,
and the gradient step reads the weights through :mod:`.inference_tensors`' zero-copy aliases).
"""
from __future__ import annotations

from ..sia import families
from .checkpointing import wan_decoder_regions, wan_regions
from .errors import TrainingError
from .few_step_sampler import euler_step
from .sia_settings import SIAHistory, WanSIATrainSettings  # noqa: F401  (the Wan trainer's settings)
from .sia_trainer import SD15Backbone, decode_latent, train_sia


class WanBackbone(SD15Backbone):
    """Core Wan's part of the stage-2 loop (see the module's docstring)."""

    model_hint = "use a Wan model that makes people"
    step = staticmethod(euler_step)

    def __init__(self, model):
        self.channels = int(model.model.latent_format.latent_channels)
        self.downscale = 16 if self.channels == 48 else 8   # Wan 2.2's VAE (TI2V 5B) compresses 16x

    def latent_shape(self, settings):
        return (1, self.channels, (settings.frames - 1) // 4 + 1, settings.height // self.downscale,
                settings.width // self.downscale)

    def loss_frames(self, settings) -> int:
        return 1    # the first video frame: the one a single latent frame decodes to

    def decode(self, vae, base_model, denoised, frame):
        return decode_latent(vae, base_model, denoised[:, :, frame:frame + 1])[:, :, 0]

    def cancel_layers(self, diffusion_model, first_stage_model):
        head = getattr(getattr(first_stage_model, "decoder", None), "head", ())
        return wan_regions(diffusion_model) + wan_decoder_regions(first_stage_model) + list(head)


def train_wan_sia(model, adapter, encode_prompt, negative, vae, identity_loss, prompts,
                  settings: WanSIATrainSettings, **kwargs) -> SIAHistory:
    """Train the Wan ``adapter`` (in place; fp32 leaf Parameters, ``info.base`` ``wan``) on the Wan ``model``;
    the arguments, callbacks and result are :func:`.sia_trainer.train_sia`'s (``encode_prompt`` gives umT5
    CONDITIONING)."""
    diffusion_model = getattr(getattr(model, "model", None), "diffusion_model", None)
    if diffusion_model is None or families.family_of(diffusion_model) != families.WAN:
        raise TrainingError("train_wan_sia needs a core Wan MODEL (Wan 2.1 / 2.2; for Wan 2.2 A14B the low-noise "
                            "expert).")
    return train_sia(model, adapter, encode_prompt, negative, vae, identity_loss, prompts, settings,
                     backbone=WanBackbone(model), **kwargs)


def new_wan_adapter(model, rank: int = 4, seed: int = 0, name: str = ""):
    """A fresh trainable Wan adapter for ``model`` (up weights zero: it starts as a no-op), drawn from the seed's
    adapter stream as on SD1.5 (:func:`.identity_setup.initial_adapter`)."""
    from ..sia import AdapterInfo
    from .identity_setup import initial_adapter
    from .inference_tensors import normal_tensors

    found = families.discover(model.model.diffusion_model)
    with normal_tensors():
        return initial_adapter(found.targets, rank, seed, AdapterInfo(name=name, base=families.WAN))
