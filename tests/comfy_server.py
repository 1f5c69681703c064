"""A headless ComfyUI server on 127.0.0.1 with the pack linked into its custom_nodes.

``ComfyServer(stand_ins=True)`` also loads test stand-ins for the third-party packs the example
workflows use (AnimateDiff-Evolved, VideoHelperSuite, comfyui_controlnet_aux) that the host
lacks: nodes generated from their recorded definitions (tests/stand_in_nodes), so the host's
real validator checks whole workflows. Packs the host has (AnimateDiff-Evolved in a modern
checkout's custom_nodes) are linked in and load for real.
"""
from __future__ import annotations

import host
from pv_tools.comfy_process import ComfyProcess

STAND_INS_DIR = host.PACK_DIR / "tests" / "stand_in_nodes"
UMT5_DOUBLE_DIR = host.PACK_DIR / "tests" / "umt5_double"   # TEST DOUBLE: a tiny umT5 for core's Wan (see there)
DEFINITIONS_DIR = host.PACK_DIR / "tests" / "data" / "node_definitions"


class ComfyServer(ComfyProcess):
    def __init__(self, stand_ins: bool = False):
        self.base = host.server_base_dir()
        host.install_pack_link(self.base)
        super().__init__(host.host_root(), base_dir=self.base if host.is_modern_host() else None)
        self.log_path = host.scratch_dir() / f"server-{self.port}.log"
        self.stand_ins = stand_ins
        host.link_checkout_packs(self.base)  # --base-directory hides the checkout's own custom_nodes
        link = self.base / "custom_nodes" / STAND_INS_DIR.name
        if not link.exists():  # registers nothing unless PV_STAND_IN_PACKS names packs
            link.symlink_to(STAND_INS_DIR, target_is_directory=True)
        link = self.base / "custom_nodes" / UMT5_DOUBLE_DIR.name
        if not link.exists():  # acts only on Wan text encoders with a vocabulary that is not umT5-XXL's
            link.symlink_to(UMT5_DOUBLE_DIR, target_is_directory=True)
        self.env["PV_UMT5_DOUBLE"] = "1"
        self.stand_in_packs = self.absent_packs() if stand_ins else []
        self.env["PV_STAND_IN_PACKS"] = ",".join(self.stand_in_packs)

    def absent_packs(self) -> list:
        """Recorded third-party packs (tests/data/node_definitions) this host does not have."""
        return [p.stem for p in sorted(DEFINITIONS_DIR.glob("*.json"))
                if not (self.base / "custom_nodes" / p.stem).exists()]

    @property
    def has_animatediff(self) -> bool:
        """AnimateDiff-Evolved loads for real in this server (not a stand-in)."""
        return "ComfyUI-AnimateDiff-Evolved" not in self.absent_packs()

    @property
    def models(self):
        return self.base / "models"

    @property
    def output(self):
        return self.base / "output"

    @property
    def input(self):
        return self.base / "input"
