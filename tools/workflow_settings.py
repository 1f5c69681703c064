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

# ---------------------------------------------------------------- looks
NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"
GROUP_COLORS = {"models": "#3f789e", "identity": "#8A8", "prompt": "#b58b2a",
                "output": "#88A", "pose": "#b06634", "train": "#8A8"}
