"""The model files the example workflows load: the name each loader's widget carries, the ComfyUI models folder it
belongs in, and where its publisher offers it.

Data only. The workflow builder (``tools.workflow_build``) writes each loader node's entry into its
``properties.models`` (``name``, ``url``, ``directory``), the metadata ComfyUI's own templates carry and the
frontend turns into download offers when the file is missing; the model-files Notes and the docs name the same
files. A new model file is one ``ModelFile`` here, named by the loader widget that picks it.

``url`` is the direct download address in the form the publisher documents: Hugging Face's
``https://huggingface.co/<owner>/<repo>/resolve/main/<path>`` and Civitai's
``https://civitai.com/api/download/models/<model version id>``. ``page`` is the page a person reads first.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFile:
    name: str        # the file name the loader's widget names
    directory: str   # ComfyUI's models folder for it (a folder_paths name: checkpoints, loras, ...)
    url: str         # the publisher's direct download address
    page: str        # the publisher's page for it
    what: str        # what it is, for people

    def metadata(self) -> dict:
        """The entry of a node's ``properties.models``, in the key order ComfyUI's templates use."""
        return {"name": self.name, "url": self.url, "directory": self.directory}


CHECKPOINT = ModelFile(
    "realisticVisionV60B1_v51VAE.safetensors", "checkpoints",
    "https://civitai.com/api/download/models/130072?type=Model&format=SafeTensor&size=pruned&fp=fp16",
    "https://civitai.com/models/4201?modelVersionId=130072",
    "Realistic Vision V5.1 with its VAE (SG_161222's SD1.5 fine-tune; the version the paper generated with)")
MOTION_MODEL = ModelFile(
    "AnimateLCM_sd15_t2v.ckpt", "animatediff_models",
    "https://huggingface.co/wangfuyun/AnimateLCM/resolve/main/AnimateLCM_sd15_t2v.ckpt",
    "https://huggingface.co/wangfuyun/AnimateLCM",
    "AnimateLCM motion model for SD1.5 (Fu-Yun Wang)")
LCM_LORA = ModelFile(
    "AnimateLCM_sd15_t2v_lora.safetensors", "loras",
    "https://huggingface.co/wangfuyun/AnimateLCM/resolve/main/AnimateLCM_sd15_t2v_lora.safetensors",
    "https://huggingface.co/wangfuyun/AnimateLCM",
    "AnimateLCM's spatial LoRA, used with the motion model at strength 1.0")
OPENPOSE_CONTROLNET = ModelFile(
    "control_v11p_sd15_openpose.pth", "controlnet",
    "https://huggingface.co/lllyasviel/ControlNet-v1-1/resolve/main/control_v11p_sd15_openpose.pth",
    "https://huggingface.co/lllyasviel/ControlNet-v1-1",
    "ControlNet 1.1 OpenPose for SD1.5 (lllyasviel)")
STYLE_LORA = ModelFile(
    "MoXinV1.safetensors", "loras",
    "https://civitai.com/api/download/models/14856?type=Model&format=SafeTensor&size=full&fp=fp16",
    "https://civitai.com/models/12597?modelVersionId=14856",
    "MoXin 1.0, a Chinese ink-painting style LoRA for SD1.5 (the style LoRA ComfyUI's own LoRA template uses); "
    "any SD1.5 style LoRA works")


# Wan 2.2 T2V A14B (workflow 10): Comfy-Org's repackaged files, the ones ComfyUI's own Wan 2.2 template and
# docs.comfy.org's Wan 2.2 page name (umT5 sits in the Wan 2.1 repository, the VAE in both)
WAN22_REPO = "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged"
WAN21_REPO = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged"
WAN22_HIGH_NOISE = ModelFile(
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "diffusion_models",
    f"{WAN22_REPO}/resolve/main/split_files/diffusion_models/wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
    WAN22_REPO, "Wan 2.2 T2V A14B, the high-noise expert (early steps: layout and motion), fp8 (Comfy-Org repackaged)")
WAN22_LOW_NOISE = ModelFile(
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", "diffusion_models",
    f"{WAN22_REPO}/resolve/main/split_files/diffusion_models/wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
    WAN22_REPO, "Wan 2.2 T2V A14B, the low-noise expert (late steps: detail; the identity goes here), fp8")
UMT5 = ModelFile(
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders",
    f"{WAN21_REPO}/resolve/main/split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    WAN21_REPO, "umT5-XXL, Wan's text encoder, fp8 (Comfy-Org repackaged); loaded by Load CLIP with type wan")
WAN21_VAE = ModelFile(
    "wan_2.1_vae.safetensors", "vae",
    f"{WAN22_REPO}/resolve/main/split_files/vae/wan_2.1_vae.safetensors",
    WAN22_REPO, "the Wan 2.1 VAE, which Wan 2.1 and the Wan 2.2 A14B experts use (TI2V 5B has its own)")
WAN_STYLE_LORA = ModelFile(
    "kaguya_style_wan21_t2v_14b.safetensors", "loras",
    "https://civitai.com/api/download/models/1881652?type=Model&format=SafeTensor",
    "https://civitai.com/models/1662459?modelVersionId=1881652",
    "The Tale of the Princess Kaguya, an ink-and-watercolour style LoRA for Wan 2.1 T2V 14B (seruva19; trigger "
    "'Kaguya-hime style'), which loads on both Wan 2.2 A14B experts; any Wan 14B T2V style LoRA works")

WAN21_T2V_1_3B = ModelFile(
    "wan2.1_t2v_1.3B_fp16.safetensors", "diffusion_models",
    f"{WAN21_REPO}/resolve/main/split_files/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors",
    WAN21_REPO, "Wan 2.1 T2V 1.3B, fp16 (Comfy-Org repackaged); the identity is trained and applied on it")

MODEL_FILES = (CHECKPOINT, MOTION_MODEL, LCM_LORA, OPENPOSE_CONTROLNET, STYLE_LORA,
               WAN22_HIGH_NOISE, WAN22_LOW_NOISE, UMT5, WAN21_VAE, WAN_STYLE_LORA, WAN21_T2V_1_3B)
BY_NAME = {m.name: m for m in MODEL_FILES}
