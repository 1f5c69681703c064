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

MODEL_FILES = (CHECKPOINT, MOTION_MODEL, LCM_LORA, OPENPOSE_CONTROLNET, STYLE_LORA)
BY_NAME = {m.name: m for m in MODEL_FILES}
