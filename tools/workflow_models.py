"""The model files the example workflows load, by the names their loader nodes carry.

Data only, read by the workflow builder (``tools.workflow_build``) and by tests that look for these names
in the host's messages.
"""
from __future__ import annotations

CHECKPOINT = "realisticVisionV60B1_v51VAE.safetensors"
MOTION_MODEL = "AnimateLCM_sd15_t2v.ckpt"
LCM_LORA = "AnimateLCM_sd15_t2v_lora.safetensors"
OPENPOSE_CONTROLNET = "control_v11p_sd15_openpose.pth"
STYLE_LORA = "your_sd15_style_lora.safetensors"
