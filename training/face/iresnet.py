"""The ArcFace "iResNet" recogniser architecture (Deng et al., arcface_torch).

Written from the architecture's description so that arcface_torch ``.pth``
backbones (r18/r34/r50/r100/r200) load by parameter name, and so that tests can
build a real-shaped recogniser with random weights:

- stem: 3x3 conv (no bias) -> BatchNorm -> PReLU, stride 1;
- four stages of improved basic blocks, each stage halves the resolution in its
  first block; a block is BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN,
  plus the (1x1 conv + BN) shortcut when the shape changes;
- head: BN -> dropout -> flatten -> Linear(C*7*7 -> D) -> BatchNorm1d (the
  feature BN, its scale frozen at 1 in training).

Input: [N, 3, 112, 112], RGB, normalised as (pixel - 127.5) / 127.5.
Output: the raw (not L2-normalised) embedding [N, D].

``.pth`` files are read with ``torch.load(weights_only=True)``: never unpickled.
"""
from __future__ import annotations

import os
import re

import torch
from torch import nn

from .errors import FaceStackError

# Blocks per stage for the published depths.
LAYOUTS = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
    "r200": (6, 26, 60, 6),
    # Not a published model: the same architecture, one block per stage and a
    # quarter of the width, small enough for fast tests.
    "tiny": (1, 1, 1, 1),
}
WIDTHS = (64, 128, 256, 512)
TINY_WIDTHS = (16, 32, 64, 128)
BN_EPS = 1e-5


class IBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=BN_EPS)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                nn.BatchNorm2d(planes, eps=BN_EPS),
            )

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    def __init__(self, layers=LAYOUTS["r100"], widths=WIDTHS, embedding_size: int = 512,
                 input_size: int = 112):
        super().__init__()
        if input_size % 16 != 0:
            raise ValueError("iResNet input size must be a multiple of 16")
        self.layers_spec = tuple(int(n) for n in layers)
        self.widths = tuple(int(w) for w in widths)
        self.input_size = input_size
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=BN_EPS)
        self.prelu = nn.PReLU(widths[0])
        inplanes = widths[0]
        for i, (count, planes) in enumerate(zip(self.layers_spec, self.widths), start=1):
            blocks = [IBasicBlock(inplanes, planes, 2)]
            blocks += [IBasicBlock(planes, planes, 1) for _ in range(count - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(inplanes, eps=BN_EPS)
        self.dropout = nn.Dropout(p=0.0)
        spatial = input_size // 16
        self.fc = nn.Linear(inplanes * spatial * spatial, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=BN_EPS)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x))
        return self.features(self.fc(torch.flatten(x, 1)))


def build_iresnet(name: str = "r100", embedding_size: int = 512) -> IResNet:
    """An iResNet by depth name (``r18``, ``r34``, ``r50``, ``r100``, ``r200``, ``tiny``)."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown iResNet depth {name!r}; choose one of {sorted(LAYOUTS)}")
    widths = TINY_WIDTHS if name == "tiny" else WIDTHS
    return IResNet(LAYOUTS[name], widths, embedding_size)


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every layer random but well-scaled weights and running statistics.

    Used by tests and the benchmark: BatchNorm scales near 1 (not 0, which would
    silence the network), random running means/variances so folding BN into convs
    at ONNX export is exercised, PReLU slopes around 0.25.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (1.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.01)
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = module.num_features
                module.weight.copy_(1.0 + 0.1 * torch.randn(n, generator=gen))
                module.bias.copy_(0.05 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.05 * torch.randn(n, generator=gen))
                module.running_var.copy_(1.0 + 0.2 * torch.rand(n, generator=gen))
            elif isinstance(module, nn.PReLU):
                module.weight.copy_(0.25 + 0.05 * torch.randn(module.weight.shape, generator=gen))
        # Keep the residual branches small so activations stay bounded through
        # the 49 blocks of r100 (as trained networks do).
        for module in model.modules():
            if isinstance(module, IBasicBlock):
                module.bn3.weight.mul_(0.2)
    return model.eval()


_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")


def _layout_from_state_dict(state: dict) -> tuple:
    counts = [0, 0, 0, 0]
    for key in state:
        m = _BLOCK_KEY.match(key)
        if m:
            stage, index = int(m.group(1)), int(m.group(2))
            counts[stage - 1] = max(counts[stage - 1], index + 1)
    return tuple(counts)


def load_arcface_pth(path: str) -> IResNet:
    """Load an arcface_torch backbone ``.pth`` (a state dict) into :class:`IResNet`.

    The depth, widths and embedding size are read from the tensors themselves.
    Only tensors are accepted (``weights_only=True``); files holding pickled
    modules or other objects are refused with a clear error.
    """
    if not os.path.isfile(path):
        raise FaceStackError(f"arcface backbone file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, truncated file, not a torch file...
        raise FaceStackError(
            f"could not read {path} as an arcface_torch backbone state dict ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Only plain state dicts (as saved by "
            "arcface_torch, e.g. backbone.pth) are accepted; files holding pickled modules are refused."
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "conv1.weight" not in state or "fc.weight" not in state:
        raise FaceStackError(
            f"{path} is not an arcface_torch iResNet backbone (no conv1.weight / fc.weight tensors)."
        )
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    layout = _layout_from_state_dict(state)
    if 0 in layout:
        raise FaceStackError(f"{path}: could not find the four iResNet stages (layer1..layer4) in its tensors")
    widths = tuple(int(state[f"layer{i}.0.conv1.weight"].shape[0]) for i in range(1, 5))
    embedding_size, flat = (int(s) for s in state["fc.weight"].shape)
    spatial = int(round((flat / widths[3]) ** 0.5))
    model = IResNet(layout, widths, embedding_size, input_size=spatial * 16)
    missing, unexpected = model.load_state_dict(
        {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, strict=False
    )
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise FaceStackError(
            f"{path} does not match the iResNet layout {layout}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return model.float().eval()
