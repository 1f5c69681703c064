"""SD1.5's noise levels as ComfyUI's model sampling holds them, for the engine's training samples.

- The table: one noise level per training timestep, ``sigma_t = sqrt((1 - abar_t) / abar_t)``
  with ``abar`` the cumulative product of ``1 - beta`` of SD1.5's beta schedule (the shipped
  scheduler config: ``scaled_linear``, betas evenly spaced in square root from ``beta_start`` to
  ``beta_end``), computed in float64 and held in float32.
- A fractional timestep's noise level: log sigma interpolated between its two neighbours.
- A noise level's timestep, which the UNet is given: the entry of the table nearest in log sigma.
- ``sgm_uniform``: ``steps`` timesteps evenly spaced from the top of the table to its bottom
  (that one excluded), then 0.

With these the engine computes a training sample the way the Train node does through
ComfyUI's sampling of the same model (same noise levels, same timesteps, same scaling),
so for a seed the two front ends agree on stage 2 as well as on stage 1.
"""
from __future__ import annotations

import torch

from .errors import EngineError


class NoiseTable:
    """SD1.5's noise levels from a scheduler config (:data:`.models.EngineModels.scheduler_config`)."""

    def __init__(self, config: dict):
        schedule = config.get("beta_schedule", "scaled_linear")
        n = int(config.get("num_train_timesteps", 1000))
        start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
        if schedule != "scaled_linear" or config.get("prediction_type", "epsilon") != "epsilon":
            raise EngineError(f"internal: the noise schedule must be SD1.5's (scaled_linear betas, epsilon "
                              f"prediction), not {schedule!r} / {config.get('prediction_type')!r}")
        betas = torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float64) ** 2
        abar = torch.cumprod(1.0 - betas, dim=0)
        sigmas = ((1 - abar) / abar) ** 0.5
        self.sigmas = sigmas.float()
        self.log_sigmas = sigmas.log().float()
        self.prediction = "eps"      # the UNet predicts the noise

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """The noise level of a (fractional) timestep."""
        t = torch.clamp(timestep.float(), min=0, max=self.sigmas.shape[0] - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The timestep of a noise level: the nearest entry of the table in log sigma."""
        distances = sigma.float().log() - self.log_sigmas[:, None]
        return distances.abs().argmin(dim=0).view(sigma.shape)

    def sgm_uniform(self, steps: int) -> torch.Tensor:
        """The ``steps`` noise levels of the sgm_uniform schedule, then 0."""
        top, bottom = self.timestep(self.sigma_max), self.timestep(self.sigma_min)
        timesteps = torch.linspace(top, bottom, steps + 1)[:-1]
        return torch.tensor([float(self.sigma(t)) for t in timesteps] + [0.0], dtype=torch.float32)

    def model_input(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """What the UNet is given for the noisy sample ``x = x0 + sigma * noise``."""
        return x / (sigma ** 2 + 1.0) ** 0.5

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0 from the UNet's noise prediction ``eps`` for ``x`` at ``sigma``."""
        return x - eps * sigma
