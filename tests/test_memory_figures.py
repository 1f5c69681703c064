"""The training memory figure is stated once and everywhere alike: the doctor's constants, the README, the
nodes page, the bench's target, and the settings they name are the node's defaults."""
import re
import types
from pathlib import Path

import torch

from comfyui_personalvideo import doctor
from comfyui_personalvideo.doctor import gpu
from comfyui_personalvideo.nodes.train_identity import TrainPersonalVideoIdentity
from comfyui_personalvideo.training.sia_settings import TRAINING_CFG

ROOT = Path(__file__).resolve().parent.parent


def _one_line(path):
    return " ".join((ROOT / path).read_text(encoding="utf-8").split())


def test_readme_nodes_page_and_bench_state_the_doctors_figure_and_settings():
    peak, card, settings = gpu.TRAIN_PEAK_GIB, gpu.TRAIN_TARGET_GIB, gpu.TRAIN_SETTINGS
    for page in ("README.md", "docs/nodes.md"):
        text = _one_line(page)
        assert f"about {peak} GiB of GPU memory" in text, page
        assert settings in text, (page, settings)
        assert f"a {card} GB card fits it" in text, page
    bench = (ROOT / "bench" / "bench_train.py").read_text(encoding="utf-8")
    assert re.search(rf"^STAGE2_TARGET_GIB = {peak}\b", bench, re.M)
    # no other training figure left behind
    for page in ("README.md", "docs/nodes.md", "docs/install.md", "docs/tuning.md"):
        text = _one_line(page)
        assert "16 GB" not in text and "designed to fit" not in text, page


def test_the_settings_named_are_the_defaults():
    frames, size, cfg, rank = re.match(r"(\d+) frames of (\d+)x\d+, training_cfg ([\d.]+), rank (\d+)",
                                       gpu.TRAIN_SETTINGS).groups()
    required = TrainPersonalVideoIdentity.INPUT_TYPES()["required"]
    assert int(frames) == required["frames"][1]["default"]
    assert int(size) == required["width"][1]["default"] == required["height"][1]["default"]
    assert float(cfg) == TRAINING_CFG == required["training_cfg"][1]["default"]
    assert int(rank) == required["sia_rank"][1]["default"]
    assert "gradient checkpointing on" in gpu.TRAIN_SETTINGS   # what auto keeps where memory is short


def test_the_doctor_says_it(monkeypatch):
    gib = 1024 ** 3
    fake = types.SimpleNamespace(is_available=lambda: True, current_device=lambda: 0,
                                 get_device_name=lambda i: "Test GPU", mem_get_info=lambda i: (11.7 * gib, 12 * gib))
    monkeypatch.setattr(torch, "cuda", fake)
    monkeypatch.setattr(gpu, "_comfy_device", lambda: None)
    result = gpu.check_torch(doctor.DoctorContext(comfyui_root=".", in_server=False))
    assert f"about {gpu.TRAIN_PEAK_GIB} GiB ({gpu.TRAIN_SETTINGS})" in result.message
