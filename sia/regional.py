"""Adapters that act inside a region of the picture only, several on one MODEL (two people, two identities).

An adapter given a mask does not change the q/k/v of every token: its q/k/v
deltas stay switched off, and the spatial self-attention (``attn1``) of each
block is computed once per region with that region's adapter switched on, and
once plain; the block's output is the blend of those, token by token, with the
masks' weights::

    out = (1 - sum w_r) * attention(plain)  +  sum w_r * attention(adapter r)     (sum w_r <= 1)

(where the masks overlap and their weights add up to more than 1 they are
scaled down to sum to 1).  So a token fully inside region A gets exactly the
attention output of the MODEL with adapter A alone, a token fully inside region
B exactly that of adapter B alone, and a token outside every region exactly
the plain model's: each identity's attention is kept apart, and the attention
itself is the host's own (its attention backend, LoRA weight patches on the
projections and on ``to_out`` included).  Soft mask edges blend the outputs.

Each region keeps its own late-step gate: a region whose gate is closed takes
no part, and with every gate closed the block runs as the plain model does,
bit for bit.  Attention is computed again only for the regions that are on and
have weight in the batch: with complementary masks, one attention per region
in the adapted steps, none extra in the others.

Where another node replaces a block's self-attention (an ``attn1`` replace patch:
Perturbed-Attention Guidance, Self-Attention Guidance; or an object patch on
``attn1.forward`` put on after ours), the host computes q, k and v itself and
never calls the blend.  There each region's q/k/v deltas act token by token with
the mask's weight (``q = q_plain + w * delta_q``, likewise k and v), and the
console says so once per block: exact for a patch that returns v (PAG) or any
other function of one token's q/k/v, and a close approximation for one that
computes attention (tokens then attend to keys of other regions under those
regions' adapters; overlapping masks add up).
"""
from __future__ import annotations

import logging

log = logging.getLogger("PersonalVideo")


class Switch:
    """Whether one region's q/k/v deltas are on (read by the projections' forwards as ``.active``)."""

    def __init__(self):
        self.active = False


class Region:
    """One adapter in one mask: its gate, its token weights and the switch of its deltas."""

    def __init__(self, gate, token_mask):
        self.gate = gate
        self.token_mask = token_mask
        self.switch = Switch()
        self.in_blend = False     # a RegionalAttention with this region is running
        self._told = set()

    def delta_weight(self, x, block: str):
        """How much of this region's q/k/v delta a projection adds for the tokens ``x``: 1.0 while the blend
        computes this region's attention, the mask's weights ([batch, tokens, 1]) where the block's attention
        was replaced by another node's (the gate open, no blend running), None (nothing) otherwise."""
        if self.switch.active:
            return 1.0
        if not self.gate.active or self.in_blend:
            return None
        weights = self.token_mask.weights(x)
        if not bool(weights.any()):
            return None
        if block not in self._told:
            self._told.add(block)
            log.warning("[PersonalVideo] another node replaces the self-attention of block %s (e.g. Perturbed-"
                        "Attention Guidance, Self-Attention Guidance): the regional SIA adapter acts there on each "
                        "token's q/k/v by its mask weight instead of blending attention outputs.", block)
        return weights


class RegionalAttention:
    """The ``forward`` of one block's ``attn1`` on a MODEL clone carrying region adapters.

    ``base_forward`` is what ran before (another object patch on this forward),
    or None for the module's own forward.  Adding a region makes a new object,
    so the clone the first region went on keeps its own.
    """

    def __init__(self, module, base_forward, regions: tuple):
        self.module = module
        self.base_forward = base_forward
        self.regions = tuple(regions)

    def with_region(self, region: Region) -> "RegionalAttention":
        return RegionalAttention(self.module, self.base_forward, self.regions + (region,))

    def _attention(self, x, args, kwargs):
        if self.base_forward is not None:
            return self.base_forward(x, *args, **kwargs)
        return type(self.module).forward(self.module, x, *args, **kwargs)

    def __call__(self, x, *args, **kwargs):
        for region in self.regions:
            region.in_blend = True
        try:
            return self._blend(x, args, kwargs)
        finally:
            for region in self.regions:
                region.in_blend = False

    def _blend(self, x, args, kwargs):
        active = [r for r in self.regions if r.gate.active]
        if not active:
            return self._attention(x, args, kwargs)
        weights = [r.token_mask.weights(x) for r in active]
        total = weights[0]
        for w in weights[1:]:
            total = total + w
        scale_down = total.clamp(min=1.0)
        rest = 1.0 - total.clamp(max=1.0)
        out = None
        if bool(rest.any()):
            out = self._attention(x, args, kwargs) * rest
        for region, w in zip(active, weights):
            if not bool(w.any()):
                continue
            region.switch.active = True
            try:
                part = self._attention(x, args, kwargs)
            finally:
                region.switch.active = False
            part = part * (w / scale_down)
            out = part if out is None else out + part
        return out


def add_region(existing, module, region: Region) -> RegionalAttention:
    """The attn1 forward for a clone whose current forward patch is ``existing`` (None, another pack's,
    or ours with other regions), with ``region`` added."""
    if isinstance(existing, RegionalAttention):
        return existing.with_region(region)
    return RegionalAttention(module, existing, (region,))
