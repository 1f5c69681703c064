"""The identity stack: face detection, alignment, a differentiable ArcFace encoder
and the identity loss of PersonalVideo (Eq. 2).

One concept per module:

- ``model_paths``: find antelopev2 / buffalo_l through ComfyUI's ``insightface`` folders.
- ``providers``: onnxruntime sessions with a provider choice and fallback notices.
- ``detector``: SCRFD face detection (insightface's own post-processing) with retries.
- ``analysis``: the face stack built from our loader or a PuLID/InstantID FaceAnalysis.
- ``align``: 5-point similarity transform (Umeyama) and a differentiable warp.
- ``references``: reference photos to aligned crops and embeddings.
- ``augment``: seedable colour jitter and light geometric augmentation.
- ``iresnet``: the ArcFace iResNet architecture (arcface_torch ``.pth`` backbones).
- ``encoder``: ONNX recogniser to a frozen PyTorch module, cached as safetensors.
- ``identity_loss``: 1 - cos identity loss on decoded frames, with gradient.

insightface, onnxruntime and onnx2torch are imported lazily inside functions, so
importing this package never imports them.  insightface's pretrained models are
licensed for non-commercial research only.
"""
from .errors import FaceStackError

__all__ = ["FaceStackError"]
