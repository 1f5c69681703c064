"""What the example workflows ship with: the input files they name, the identity, the generation and
training defaults, the colours of their groups. Data only, read by the workflow builder (``tools.workflow_build``)
and its notes (``tools.workflow_notes``).
"""
from __future__ import annotations

# ---------------------------------------------------------------- inputs and identity
BETA_SCHEDULE = "lcm avg(sqrt_linear,linear)"
REFERENCE_PHOTO = "person.png"
POSE_VIDEO = "pose_video.mp4"
IDENTITY = "my_identity"
CLASS_WORD = "person"
ADAPTER_FILE = f"{IDENTITY}.safetensors"

# ---------------------------------------------------------------- generation defaults
FRAMES, WIDTH, HEIGHT = 16, 512, 512
STEPS, CFG, SAMPLER, SCHEDULER = 6, 1.5, "lcm", "sgm_uniform"
SEED = 42
START_PERCENT, END_PERCENT, STRENGTH = 0.75, 1.0, 1.0
FPS = 8
PROMPT = "{identity} walking on a beach at sunset, smiling, wind in the hair, highly detailed"
NEGATIVE = "blurry, low quality, deformed face, watermark, text"

# ---------------------------------------------------------------- Magic-Me's tools and two identities
NOISE_PRIOR_GAMMA = 0.15  # the paper's
FACE_DETAIL_DENOISE = 0.8  # the paper's
REGION_IDENTITIES = (("left", "identity_left", "{identity} on the left, walking on a beach at sunset, smiling"),
                     ("right", "identity_right", "{identity} on the right, walking on a beach at sunset, laughing"))
REGION_FEATHER = 0.05

# ---------------------------------------------------------------- Wan 2.2 T2V A14B (workflow 10)
# ComfyUI's Wan 2.2 14B T2V template: 640x640, 81 frames (5 s at 16 fps), 20 euler / simple steps at cfg 3.5,
# shift 8 on both experts, the high-noise expert for steps 0-10 and the low-noise one for the rest
WAN_WIDTH, WAN_HEIGHT, WAN_LENGTH = 640, 640, 81
WAN_STEPS, WAN_SWITCH_STEP, WAN_CFG, WAN_SAMPLER, WAN_SCHEDULER = 20, 10, 3.5, "euler", "simple"
WAN_SHIFT = 8.0
WAN_FPS = 16
WAN_STYLE_STRENGTH = 0.8
WAN_PROMPT = ("Kaguya-hime style, {identity} walking along a river bank in spring, cherry blossoms falling, "
              "turning to smile at the camera, soft ink and watercolour")
WAN_NEGATIVE = "blurry, low quality, static, deformed face, extra fingers, watermark, subtitles"

# ---------------------------------------------------------------- looks
NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"
GROUP_COLORS = {"models": "#3f789e", "identity": "#8A8", "prompt": "#b58b2a",
                "output": "#88A", "pose": "#b06634", "train": "#8A8"}
