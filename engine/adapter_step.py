"""Stage 2's optimiser and each iteration's update with its bookkeeping, the same on SD1.5 (:mod:`.train_adapter`)
and Wan (:mod:`.wan_train`): the LoRA's weights in fp32 with their starting copy, AdamW, the precision and the
gradient-checkpointing choice (:func:`start`); per iteration the identity loss of the decoded frame plus the
weight-space regulariser, one AdamW step when the frame has a face (none otherwise: the iteration is skipped and
counted), the histories, the progress call, and the stop with the nodes' message when most frames have no face
(:meth:`AdapterRun.update`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..training import precision as amp
from ..training.checkpoint_choice import engine_checkpointing
from ..training.sia_settings import SIAHistory, adapter_optimizer, flat_copy, reg_term
from . import sia_peft, training_dtypes
from .errors import EngineError


@dataclass
class AdapterRun:
    params: list
    initial: torch.Tensor   # the LoRA's starting weights as one flat vector
    optimizer: torch.optim.Optimizer
    precision: object
    checkpointing: bool
    history: SIAHistory
    settings: object
    no_face_advice: str

    model: torch.nn.Module = None

    @property
    def device(self):
        return self.params[0].device

    def finish(self) -> None:
        """The adapter on again for every call, gradient checkpointing off again."""
        sia_peft.set_enabled(self.model, True)
        if self.checkpointing:
            self.model.disable_gradient_checkpointing()

    def update(self, it: int, identity_loss, pixels, latents, progress=None) -> None:
        """Iteration ``it``: the step on the decoded frame ``pixels`` and its record."""
        settings, history = self.settings, self.history
        with self.precision.full():
            out = identity_loss(pixels)
            loss = float("nan")
            if out.has_face:
                total = out.loss + settings.reg_lambda * reg_term(self.params, self.initial)
                self.optimizer.zero_grad(set_to_none=True)
                self.precision.backward_and_step(total, self.optimizer)
                loss = float(total.detach())
        history.loss.append(loss)
        history.similarity.append(out.mean_similarity)
        if math.isnan(loss):
            history.skipped += 1
        done = it + 1
        if done >= min(settings.no_face_check_after, settings.iterations) and \
                history.skipped > settings.max_no_face_fraction * done:
            raise EngineError(f"no face was found in the generated frame of {history.skipped} of {done} training "
                              f"iterations, so the identity loss cannot train the adapter. {self.no_face_advice}")
        if it == settings.iterations - 1:
            history.last_latent = latents.detach().cpu()
        if progress is not None:
            progress(it, loss, out.mean_similarity)


def start(model: torch.nn.Module, settings, no_face_advice: str) -> AdapterRun:
    """The run of the LoRA attached to ``model`` (its weights made fp32, their starting copy kept; gradient
    checkpointing of ``model`` on where chosen, until :meth:`AdapterRun.finish`)."""
    params = sia_peft.parameters(model)
    if not params:
        raise EngineError("internal: attach the SIA LoRA before training it")
    precision = amp.resolve(settings.precision, params[0].device, training_dtypes.compute_dtype(model))
    for p in params:
        p.data = p.data.float()
    optimizer = adapter_optimizer(params, settings)
    checkpointing = engine_checkpointing(settings.gradient_checkpointing, params[0].device)
    if checkpointing:
        model.enable_gradient_checkpointing()
    return AdapterRun(params, flat_copy(params), optimizer, precision, checkpointing,
                      SIAHistory(precision=precision.name), settings, no_face_advice, model)
