"""The example workflows, described once here and written as ComfyUI UI files and API twins.

    python -m tools.workflow_build           # (re)write workflows/*.json and workflows/api/*.json
    python -m tools.workflow_build --check   # exit 1 if the committed files differ from this description

This module lays out the graphs. The data they are made of lives beside it: the node types' sockets and
widgets (``workflow_specs``), the model files (``workflow_models``), the defaults and input files
(``workflow_settings``) and the Note texts (``workflow_notes``); ``workflow_writer`` turns a graph into the
UI file people load and the API twin ``POST /prompt`` takes. A new workflow is a function here that returns a
``Graph``, listed in ``WORKFLOWS``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .workflow_models import (CHECKPOINT, LCM_LORA, MOTION_MODEL, OPENPOSE_CONTROLNET, STYLE_LORA, UMT5,
                              WAN21_T2V_1_3B, WAN21_VAE, WAN22_HIGH_NOISE, WAN22_LOW_NOISE, WAN_STYLE_LORA)
from .workflow_notes import (FACE_MODELS_NOTE, MAGICME_NOTE, POSE_NOTE, SAMPLING_NOTE, SCORE_NOTE, STYLE_NOTE,
                             TRAIN_AND_GENERATE_NOTE, TRAIN_NOTE, TWO_ADAPTERS_NOTE, TWO_IDENTITIES_NOTE,
                             WAN_MODEL_FILES_NOTE, WAN_NOTE, WAN_TRAIN_NOTE, model_files_note)
from .workflow_settings import (ADAPTER_FILE, BETA_SCHEDULE, CFG, CLASS_WORD, END_PERCENT, FACE_DETAIL_DENOISE,
                                FPS, FRAMES, GROUP_COLORS, HEIGHT, IDENTITY, NEGATIVE, NOISE_PRIOR_GAMMA,
                                POSE_VIDEO, PROMPT, REFERENCE_PHOTO, REGION_FEATHER, REGION_IDENTITIES, SAMPLER,
                                SCHEDULER, SEED, START_PERCENT, STEPS, STRENGTH, WAN_CFG, WAN_FPS, WAN_HEIGHT,
                                WAN_LENGTH, WAN_NEGATIVE, WAN_PROMPT, WAN_SAMPLER, WAN_SCHEDULER, WAN_SHIFT,
                                WAN_STEPS, WAN_STYLE_STRENGTH, WAN_SWITCH_STEP, WAN_WIDTH, WIDTH)
from .workflow_writer import Graph

REPO_DIR = Path(__file__).resolve().parent.parent
WORKFLOWS_DIR = REPO_DIR / "workflows"


# ---------------------------------------------------------------- shared pieces
def _models(g: Graph, x=40, y=60):
    """Checkpoint -> AnimateLCM LoRA -> AnimateDiff-Evolved loader. Returns (ckpt, lora, animated)."""
    ckpt = g.add("CheckpointLoaderSimple", (x, y), (380, 100), title="Load SD1.5 Checkpoint",
                 ckpt_name=CHECKPOINT.name)
    lora = g.add("LoraLoaderModelOnly", (x, y + 170), (380, 90), title="AnimateLCM LoRA",
                 lora_name=LCM_LORA.name, strength_model=1.0)
    g.link(ckpt, "MODEL", lora, "model")
    ade_node = g.add("ADE_AnimateDiffLoaderGen1", (x, y + 320), (380, 300), title="AnimateLCM Motion Model",
                     model_name=MOTION_MODEL.name, beta_schedule=BETA_SCHEDULE)
    g.link(lora, "MODEL", ade_node, "model")
    g.group("Models: SD1.5 + AnimateLCM", [ckpt, lora, ade_node], GROUP_COLORS["models"])
    return ckpt, lora, ade_node


def _prompt_and_sample(g: Graph, model_node, model_output, clip_node, clip_output, trigger_node, x, y):
    """Identity prompt -> text encoders -> empty latent -> KSampler. Returns (pos, neg, latent, sampler)."""
    prompt = g.add("PV_IdentityPrompt", (x, y), (400, 160), title="Prompt ({identity} = your trigger phrase)",
                   text=PROMPT)
    g.link(trigger_node, "trigger_phrase", prompt, "trigger_phrase")
    pos = g.add("CLIPTextEncode", (x, y + 230), (400, 90), title="Positive", text="")
    g.link(clip_node, clip_output, pos, "clip")
    g.link(prompt, "prompt", pos, "text")
    neg = g.add("CLIPTextEncode", (x, y + 370), (400, 130), title="Negative", text=NEGATIVE)
    g.link(clip_node, clip_output, neg, "clip")
    g.group("Prompt", [prompt, pos, neg], GROUP_COLORS["prompt"])
    latent = g.add("EmptyLatentImage", (x + 470, y), (320, 110), title=f"{FRAMES} frames, {WIDTH}x{HEIGHT}",
                   width=WIDTH, height=HEIGHT, batch_size=FRAMES)
    sampler = g.add("KSampler", (x + 470, y + 180), (320, 270), title="KSampler (AnimateLCM: lcm + sgm_uniform)",
                    seed=SEED, steps=STEPS, cfg=CFG, sampler_name=SAMPLER, scheduler=SCHEDULER, denoise=1.0)
    g.link(model_node, model_output, sampler, "model")
    g.link(pos, "CONDITIONING", sampler, "positive")
    g.link(neg, "CONDITIONING", sampler, "negative")
    g.link(latent, "LATENT", sampler, "latent_image")
    return pos, neg, latent, sampler


def _decode_and_save(g: Graph, sampler, vae_node, x, y, prefix, vhs=False):
    decode = g.add("VAEDecode", (x, y), (220, 50))
    g.link(sampler, "LATENT", decode, "samples")
    g.link(vae_node, "VAE", decode, "vae")
    if vhs:
        save = g.add("VHS_VideoCombine", (x, y + 110), (360, 560), title="Video Combine (mp4)",
                     frame_rate=FPS, loop_count=0, filename_prefix=prefix, format="video/h264-mp4",
                     pix_fmt="yuv420p", crf=19, save_metadata=True, trim_to_audio=False, pingpong=False,
                     save_output=True)
    else:
        save = g.add("SaveAnimatedWEBP", (x, y + 110), (360, 520), title="Save Animated WEBP",
                     filename_prefix=prefix, fps=float(FPS), lossless=False, quality=90, method="default")
    g.link(decode, "IMAGE", save, "images")
    g.group("Decode and save", [decode, save], GROUP_COLORS["output"])
    return decode, save



def _adapter(g: Graph, model_node, model_output, x, y):
    load = g.add("PV_LoadSIAAdapter", (x, y), (380, 80), title="Load SIA Adapter (models/sia)",
                 adapter_name=ADAPTER_FILE)
    apply = g.add("PV_ApplySIALateSteps", (x, y + 140), (380, 110), strength=STRENGTH, start_percent=START_PERCENT,
                  end_percent=END_PERCENT)
    g.link(model_node, model_output, apply, "model")
    g.link(load, "sia_adapter", apply, "sia_adapter")
    g.group("Identity (trained with workflow 01)", [load, apply], GROUP_COLORS["identity"])
    return load, apply


def _generation(g: Graph, name_prefix, style_lora=False, vhs=False, extra_note=""):
    ckpt, lora, ade_node = _models(g)
    clip_node, clip_output = ckpt, "CLIP"
    if style_lora:
        style = g.add("LoraLoader", (40, 820), (380, 130), title="Style LoRA (any SD1.5 LoRA)",
                      lora_name=STYLE_LORA.name, strength_model=0.8, strength_clip=0.8)
        g.link(ckpt, "MODEL", style, "model")
        g.link(ckpt, "CLIP", style, "clip")
        g.link(style, "MODEL", lora, "model")  # the style LoRA goes between checkpoint and AnimateLCM LoRA
        clip_node, clip_output = style, "CLIP"
        g.group("Style", [style], GROUP_COLORS["prompt"])
    load, apply = _adapter(g, ade_node, "MODEL", 500, 60)
    _, _, _, sampler = _prompt_and_sample(g, apply, "model", clip_node, clip_output, load, 980, 60)
    _decode_and_save(g, sampler, ckpt, 1840, 60, name_prefix, vhs=vhs)
    g.note((500, 420), (440, 440), model_files_note(False) + extra_note, title="Model files: where each goes")
    g.note((980, 640), (790, 260), SAMPLING_NOTE, title="Settings")
    return ckpt, lora, ade_node, load, apply, sampler




# ---------------------------------------------------------------- the workflows
def _trainer(g: Graph, ckpt, ade_node, x, y, photo_x=500, photo_y=60):
    photo = g.add("LoadImage", (photo_x, photo_y), (380, 360), title="Reference photo (ComfyUI/input)",
                  image=REFERENCE_PHOTO)
    faces = g.add("PV_LoadFaceAnalysis", (photo_x, photo_y + 430), (380, 90), model_pack="antelopev2",
                  provider="auto")
    g.group("Reference photo and face models", [photo, faces], GROUP_COLORS["identity"])
    train = g.add("PV_TrainIdentity", (x, y), (420, 700), title="Train PersonalVideo Identity",
                  identity_name=IDENTITY, class_word=CLASS_WORD, prompts=_default_prompts(), ti_steps=400,
                  ti_learning_rate=1e-3, ti_batch_size=4, sia_iterations=400, sia_learning_rate=1e-4, sia_rank=4,
                  reg_lambda=1e-2, frames=FRAMES, width=WIDTH, height=HEIGHT, sampling_steps=4, seed=0,
                  if_exists="reuse", checkpoint_every=50, training_cfg=CFG, negative_prompt=NEGATIVE, resume=True,
                  early_stop=False, gradient_checkpointing="auto")
    _train_links(g, train, (ade_node, "MODEL"), (ckpt, "CLIP"), (ckpt, "VAE"), photo, faces)
    g.link(ckpt, "MODEL", train, "image_model")
    g.group("Train", [train], GROUP_COLORS["train"])
    return photo, faces, train


def _train_links(g: Graph, train, model, clip, vae, photo, faces):
    """A Train node's model, clip and vae ((node, output) each), reference photo and face analysis."""
    for (node, output), name in ((model, "model"), (clip, "clip"), (vae, "vae")):
        g.link(node, output, train, name)
    g.link(photo, "IMAGE", train, "reference_images")
    g.link(faces, "face_analysis", train, "face_analysis")


def _default_prompts() -> str:
    return "\n".join(json.loads((REPO_DIR / "training" / "prompts.json").read_text())["prompts"])


def _training_outputs(g: Graph, train, x, y):
    curve = g.add("SaveImage", (x, y), (420, 340), title="Loss curve", filename_prefix="PersonalVideo/loss_curve")
    g.link(train, "loss_curve", curve, "images")
    frames = g.add("PreviewImage", (x, y + 400), (420, 340), title="Last training video (frames)")
    g.link(train, "preview_frames", frames, "images")
    g.group("Training results", [curve, frames], GROUP_COLORS["output"])
    return curve, frames


def train_identity() -> Graph:
    g = Graph("01_train_identity", "PersonalVideo 01: train an identity")
    ckpt, _, ade_node = _models(g)
    _, _, train = _trainer(g, ckpt, ade_node, 980, 60)
    _training_outputs(g, train, 1480, 60)
    g.note((500, 660), (440, 420), model_files_note(True), title="Model files: where each goes")
    g.note((40, 760), (400, 520), TRAIN_NOTE, title="How to train")
    return g


def generate_with_identity() -> Graph:
    g = Graph("02_generate_with_identity", "PersonalVideo 02: generate with an identity")
    _generation(g, "PersonalVideo/identity")
    return g


def generate_with_pose() -> Graph:
    g = Graph("03_generate_with_pose", "PersonalVideo 03: generate with an identity following a pose video")
    ckpt, _, _, _, _, sampler = _generation(g, "PersonalVideo/pose", vhs=True, extra_note=POSE_NOTE)
    video = g.add("VHS_LoadVideo", (40, 1360), (380, 560), title="Pose video (ComfyUI/input)",
                  video=POSE_VIDEO, force_rate=float(FPS), custom_width=WIDTH, custom_height=HEIGHT,
                  frame_load_cap=FRAMES, skip_first_frames=0, select_every_nth=1, format="AnimateDiff")
    pose = g.add("DWPreprocessor", (500, 1360), (380, 260), title="DWPose Estimator",
                 detect_hand="enable", detect_body="enable", detect_face="enable", resolution=WIDTH,
                 bbox_detector="yolox_l.onnx", pose_estimator="dw-ll_ucoco_384_bs5.torchscript.pt",
                 scale_stick_for_xinsr_cn="disable")
    g.link(video, "IMAGE", pose, "image")
    preview = g.add("PreviewImage", (500, 1690), (380, 300), title="Poses")
    g.link(pose, "IMAGE", preview, "images")
    cn = g.add("ControlNetLoader", (980, 1360), (400, 80), title="OpenPose ControlNet",
               control_net_name=OPENPOSE_CONTROLNET.name)
    apply_cn = g.add("ControlNetApplyAdvanced", (980, 1500), (400, 190), title="Apply ControlNet (pose)",
                     strength=1.0, start_percent=0.0, end_percent=1.0)
    pos_origin, neg_origin = sampler.links_in["positive"], sampler.links_in["negative"]
    apply_cn.links_in["positive"], apply_cn.links_in["negative"] = pos_origin, neg_origin
    g.link(cn, "CONTROL_NET", apply_cn, "control_net")
    g.link(pose, "IMAGE", apply_cn, "image")
    g.link(apply_cn, "positive", sampler, "positive")
    g.link(apply_cn, "negative", sampler, "negative")
    g.group("Pose: video -> DWPose -> OpenPose ControlNet", [video, pose, preview, cn, apply_cn],
            GROUP_COLORS["pose"])
    return g



def generate_with_style_lora() -> Graph:
    g = Graph("04_generate_with_style_lora", "PersonalVideo 04: generate with an identity and a style LoRA")
    _generation(g, "PersonalVideo/style", style_lora=True, extra_note=STYLE_NOTE)
    return g



def _results_and_apply(g: Graph, train, model_node):
    """The trainer's chart and frames, and its new adapter applied to ``model_node``'s MODEL. Returns the Apply."""
    _training_outputs(g, train, 1480, 60)
    apply = g.add("PV_ApplySIALateSteps", (1480, 940), (380, 110), strength=STRENGTH, start_percent=START_PERCENT,
                  end_percent=END_PERCENT)
    g.link(model_node, "MODEL", apply, "model")
    g.link(train, "sia_adapter", apply, "sia_adapter")
    g.group("Apply the new identity", [apply], GROUP_COLORS["identity"])
    return apply


def train_and_generate() -> Graph:
    g = Graph("05_train_and_generate", "PersonalVideo 05: train an identity and generate with it")
    ckpt, _, ade_node = _models(g)
    _, _, train = _trainer(g, ckpt, ade_node, 980, 60)
    apply = _results_and_apply(g, train, ade_node)
    _, _, _, sampler = _prompt_and_sample(g, apply, "model", ckpt, "CLIP", train, 1960, 60)
    _decode_and_save(g, sampler, ckpt, 2820, 60, "PersonalVideo/identity")
    g.note((500, 660), (440, 420), model_files_note(True), title="Model files: where each goes")
    g.note((40, 760), (400, 340), TRAIN_AND_GENERATE_NOTE, title="Start here")
    g.note((1960, 640), (790, 260), SAMPLING_NOTE, title="Settings")
    return g



def generate_with_face_detail() -> Graph:
    g = Graph("07_generate_with_face_detail",
              "PersonalVideo 07: generate with an identity, the noise prior and a face detail pass")
    ckpt, _, ade_node = _models(g)
    load, apply = _adapter(g, ade_node, "MODEL", 500, 60)
    prior = g.add("PV_NoisePriorModel", (500, 930), (380, 80), title="3D Noise Prior for KSampler (Magic-Me)",
                  gamma=NOISE_PRIOR_GAMMA)
    g.link(apply, "model", prior, "model")
    g.group("Noise prior", [prior], GROUP_COLORS["identity"])
    pos, neg, _, sampler = _prompt_and_sample(g, prior, "model", ckpt, "CLIP", load, 980, 60)
    decode = g.add("VAEDecode", (1840, 60), (220, 50))
    g.link(sampler, "LATENT", decode, "samples")
    g.link(ckpt, "VAE", decode, "vae")
    faces = g.add("PV_LoadFaceAnalysis", (1840, 180), (380, 90), model_pack="antelopev2", provider="auto")
    face = g.add("PV_FaceDetailPass", (1840, 340), (380, 560), title="Face Detail Pass (Face VCD)",
                 seed=SEED, steps=STEPS, cfg=CFG, sampler_name=SAMPLER, scheduler=SCHEDULER,
                 denoise=FACE_DETAIL_DENOISE, working_size=WIDTH, padding=0.5, mask_feather=0.15, smoothing=2.0,
                 max_gap=4)
    g.link(decode, "IMAGE", face, "images")
    g.link(faces, "face_analysis", face, "face_analysis")
    g.link(prior, "model", face, "model")
    g.link(pos, "CONDITIONING", face, "positive")
    g.link(neg, "CONDITIONING", face, "negative")
    g.link(ckpt, "VAE", face, "vae")
    g.group("Decode and face detail pass", [decode, faces, face], GROUP_COLORS["identity"])
    save = g.add("SaveAnimatedWEBP", (2320, 60), (360, 520), title="Save Animated WEBP",
                 filename_prefix="PersonalVideo/face_detail", fps=float(FPS), lossless=False, quality=90,
                 method="default")
    g.link(face, "images", save, "images")
    track = g.add("PreviewImage", (2320, 650), (360, 300), title="Face track")
    g.link(face, "track_preview", track, "images")
    g.group("Save", [save, track], GROUP_COLORS["output"])
    g.note((500, 420), (440, 420), model_files_note(False) + FACE_MODELS_NOTE, title="Model files: where each goes")
    g.note((980, 640), (790, 260), SAMPLING_NOTE, title="Settings")
    g.note((980, 960), (790, 230), MAGICME_NOTE, title="Noise prior and face detail pass")
    return g



def generate_and_score() -> Graph:
    g = Graph("06_generate_and_score", "PersonalVideo 06: generate with an identity and score it")
    _generation(g, "PersonalVideo/identity")
    decode = next(n for n in g.nodes if n.type == "VAEDecode")
    photo = g.add("LoadImage", (2280, 60), (380, 360), title="Reference photo (ComfyUI/input)", image=REFERENCE_PHOTO)
    score = g.add("PV_ScoreIdentity", (2280, 490), (380, 200), title="Score Identity (PersonalVideo)",
                  recogniser="dlib_resnet", detector="auto", max_frames=0, fps=float(FPS))
    g.link(decode, "IMAGE", score, "frames")
    g.link(photo, "IMAGE", score, "reference_images")
    chart = g.add("PreviewImage", (2740, 60), (600, 440), title="Identity and motion chart")
    g.link(score, "chart", chart, "images")
    g.group("Score the identity", [photo, score, chart], GROUP_COLORS["output"])
    g.note((2280, 760), (600, 300), SCORE_NOTE, title="Scoring")
    return g



# ---------------------------------------------------------------- 08: two identities in one video
def _region_identity(g: Graph, side, adapter_file, text, model_node, model_output, mask_node, clip_node, x, y):
    """Load SIA Adapter -> Apply (masked) and Identity Prompt -> CLIP Text Encode -> ConditioningSetMask."""
    number = 1 if side == "left" else 2
    load = g.add("PV_LoadSIAAdapter", (x, y), (380, 80), title=f"Identity {number} ({side}): Load SIA Adapter",
                 adapter_name=f"{adapter_file}.safetensors")
    apply = g.add("PV_ApplySIALateSteps", (x, y + 140), (380, 130), title=f"Apply identity {number} ({side} region)",
                  strength=STRENGTH, start_percent=START_PERCENT, end_percent=END_PERCENT)
    g.link(model_node, model_output, apply, "model")
    g.link(load, "sia_adapter", apply, "sia_adapter")
    g.link(mask_node, side, apply, "mask")
    prompt = g.add("PV_IdentityPrompt", (x + 480, y), (400, 160), title=f"Prompt {number} ({side} person)", text=text)
    g.link(load, "trigger_phrase", prompt, "trigger_phrase")
    encode = g.add("CLIPTextEncode", (x + 480, y + 220), (400, 90), title=f"Positive {number}", text="")
    g.link(clip_node, "CLIP", encode, "clip")
    g.link(prompt, "prompt", encode, "text")
    masked = g.add("ConditioningSetMask", (x + 480, y + 370), (400, 110), title=f"Prompt {number} in the {side} region",
                   strength=1.0, set_cond_area="default")
    g.link(encode, "CONDITIONING", masked, "conditioning")
    g.link(mask_node, side, masked, "mask")
    g.group(f"Identity {number}: {side} region", [load, apply, prompt, encode, masked], GROUP_COLORS["identity"])
    return load, apply, encode, masked


def _face_pass_for(g: Graph, side, load, ade_node, images_node, images_output, faces, encode, neg, mask_node, vae, x):
    number = 1 if side == "left" else 2
    apply = g.add("PV_ApplySIALateSteps", (x, 60), (380, 130), title=f"Identity {number} for its face (no mask)",
                  strength=STRENGTH, start_percent=START_PERCENT, end_percent=END_PERCENT)
    g.link(ade_node, "MODEL", apply, "model")
    g.link(load, "sia_adapter", apply, "sia_adapter")
    face = g.add("PV_FaceDetailPass", (x, 260), (380, 600), title=f"Face Detail Pass: person {number} ({side})",
                 seed=SEED, steps=STEPS, cfg=CFG, sampler_name=SAMPLER, scheduler=SCHEDULER,
                 denoise=FACE_DETAIL_DENOISE, working_size=WIDTH, padding=0.5, mask_feather=0.15, smoothing=2.0,
                 max_gap=4)
    g.link(images_node, images_output, face, "images")
    g.link(faces, "face_analysis", face, "face_analysis")
    g.link(apply, "model", face, "model")
    g.link(encode, "CONDITIONING", face, "positive")
    g.link(neg, "CONDITIONING", face, "negative")
    g.link(vae, "VAE", face, "vae")
    g.link(mask_node, side, face, "region")
    g.group(f"Face detail, person {number}", [apply, face], GROUP_COLORS["identity"])
    return face


def two_identities() -> Graph:
    g = Graph("08_two_identities", "PersonalVideo 08: two identities in one video, each in its own region")
    ckpt, _, ade_node = _models(g)
    latent = g.add("EmptyLatentImage", (500, 60), (380, 110), title=f"{FRAMES} frames, {WIDTH}x{HEIGHT}",
                   width=WIDTH, height=HEIGHT, batch_size=FRAMES)
    halves = g.add("PV_RegionHalves", (500, 240), (380, 110), title="Region Masks: left / right",
                   split=0.5, feather=REGION_FEATHER)
    g.link(latent, "LATENT", halves, "latent")
    g.group("Frames and regions", [latent, halves], GROUP_COLORS["models"])
    model_node, model_output, people = ade_node, "MODEL", []
    for row, (side, adapter_file, text) in enumerate(REGION_IDENTITIES):
        y = 480 + row * 600
        load, model_node, encode, masked = _region_identity(g, side, adapter_file, text, model_node, model_output,
                                                            halves, ckpt, 500, y)
        model_output = "model"   # identity 2's Apply takes identity 1's MODEL: both on one MODEL
        people.append((side, load, encode, masked))
    combine = g.add("ConditioningCombine", (1460, 60), (320, 60), title="Both regions' prompts")
    g.link(people[0][3], "CONDITIONING", combine, "conditioning_1")
    g.link(people[1][3], "CONDITIONING", combine, "conditioning_2")
    neg = g.add("CLIPTextEncode", (1460, 200), (320, 130), title="Negative", text=NEGATIVE)
    g.link(ckpt, "CLIP", neg, "clip")
    sampler = g.add("KSampler", (1460, 400), (320, 270), title="KSampler (AnimateLCM: lcm + sgm_uniform)",
                    seed=SEED, steps=STEPS, cfg=CFG, sampler_name=SAMPLER, scheduler=SCHEDULER, denoise=1.0)
    g.link(model_node, model_output, sampler, "model")
    g.link(combine, "CONDITIONING", sampler, "positive")
    g.link(neg, "CONDITIONING", sampler, "negative")
    g.link(latent, "LATENT", sampler, "latent_image")
    decode = g.add("VAEDecode", (1460, 740), (320, 50))
    g.link(sampler, "LATENT", decode, "samples")
    g.link(ckpt, "VAE", decode, "vae")
    faces = g.add("PV_LoadFaceAnalysis", (1460, 860), (320, 90), model_pack="antelopev2", provider="auto")
    g.group("Sample both identities", [combine, neg, sampler, decode, faces], GROUP_COLORS["prompt"])
    images_node, images_output = decode, "IMAGE"
    for column, (side, load, encode, _) in enumerate(people):
        images_node = _face_pass_for(g, side, load, ade_node, images_node, images_output, faces, encode, neg, halves,
                                     ckpt, 1900 + column * 480)
        images_output = "images"
    save = g.add("SaveAnimatedWEBP", (2860, 60), (360, 520), title="Save Animated WEBP",
                 filename_prefix="PersonalVideo/two_identities", fps=float(FPS), lossless=False, quality=90,
                 method="default")
    g.link(images_node, "images", save, "images")
    g.group("Save", [save], GROUP_COLORS["output"])
    g.note((40, 760), (420, 580), model_files_note(False, TWO_ADAPTERS_NOTE) + FACE_MODELS_NOTE,
           title="Model files: where each goes")
    g.note((1900, 960), (860, 360), TWO_IDENTITIES_NOTE, title="Two identities")
    return g


# ---------------------------------------------------------------- 10: Wan 2.2 A14B, two experts
def _wan_expert(g: Graph, model_file, label, x, y):
    """UNETLoader -> style LoRA -> ModelSamplingSD3 for one Wan 2.2 expert. Returns (loader, lora, shift)."""
    unet = g.add("UNETLoader", (x, y), (420, 90), title=f"Wan 2.2 {label}-noise expert (Load Diffusion Model)",
                 unet_name=model_file.name, weight_dtype="default")
    lora = g.add("LoraLoaderModelOnly", (x + 490, y), (380, 90), title=f"Style LoRA ({label}-noise expert)",
                 lora_name=WAN_STYLE_LORA.name, strength_model=WAN_STYLE_STRENGTH)
    g.link(unet, "MODEL", lora, "model")
    shift = g.add("ModelSamplingSD3", (x + 940, y), (300, 60), title=f"Shift ({label}-noise expert)", shift=WAN_SHIFT)
    g.link(lora, "MODEL", shift, "model")
    return unet, lora, shift


def _wan_sampler(g: Graph, label, x, y, first: bool):
    """A KSamplerAdvanced pass of the two-expert schedule: the first adds the noise and stops at the switch with
    the leftover noise; the second continues from the switch to the end without adding noise."""
    return g.add("KSamplerAdvanced", (x, y), (340, 340),
                 title=f"KSamplerAdvanced: {label}-noise expert, steps "
                       + (f"0-{WAN_SWITCH_STEP}" if first else f"{WAN_SWITCH_STEP}-{WAN_STEPS}"),
                 add_noise="enable" if first else "disable", noise_seed=SEED if first else 0, steps=WAN_STEPS,
                 cfg=WAN_CFG, sampler_name=WAN_SAMPLER, scheduler=WAN_SCHEDULER,
                 start_at_step=0 if first else WAN_SWITCH_STEP, end_at_step=WAN_SWITCH_STEP if first else 10000,
                 return_with_leftover_noise="enable" if first else "disable")


def _wan_prompt(g: Graph, trigger_node, clip, text, size, at):
    """Identity Prompt -> umT5 positive and negative, and the empty video latent ``size`` (length, width,
    height), at the positions ``at`` (prompt, positive, negative, latent). Returns (pos, neg, latent)."""
    length, width, height = size
    prompt = g.add("PV_IdentityPrompt", at[0], (420, 160), title="Prompt ({identity} = your trigger phrase)",
                   text=text)
    g.link(trigger_node, "trigger_phrase", prompt, "trigger_phrase")
    pos = g.add("CLIPTextEncode", at[1], (400, 90), title="Positive", text="")
    g.link(clip, "CLIP", pos, "clip")
    g.link(prompt, "prompt", pos, "text")
    neg = g.add("CLIPTextEncode", at[2], (400, 130), title="Negative", text=WAN_NEGATIVE)
    g.link(clip, "CLIP", neg, "clip")
    latent = g.add("EmptyHunyuanLatentVideo", at[3], (300, 130), title=f"{length} frames, {width}x{height}",
                   width=width, height=height, length=length, batch_size=1)
    g.group("Prompt and video size", [prompt, pos, neg, latent], GROUP_COLORS["prompt"])
    return pos, neg, latent


def _wan_decode_and_save(g: Graph, sampler, vae, x, prefix):
    """VAE Decode -> animated WEBP at Wan's 16 fps, in a column at ``x``."""
    decode = g.add("VAEDecode", (x, 60), (220, 50))
    g.link(sampler, "LATENT", decode, "samples")
    g.link(vae, "VAE", decode, "vae")
    save = g.add("SaveAnimatedWEBP", (x, 170), (360, 520), title=f"Save Animated WEBP ({WAN_FPS} fps)",
                 filename_prefix=prefix, fps=float(WAN_FPS), lossless=False, quality=90, method="default")
    g.link(decode, "IMAGE", save, "images")
    g.group("Decode and save", [decode, save], GROUP_COLORS["output"])


def wan22_identity_and_style() -> Graph:
    g = Graph("10_wan22_identity_and_style",
              "PersonalVideo 10: Wan 2.2 A14B, the identity on the low-noise expert, a style LoRA on both")
    high, high_lora, high_shift = _wan_expert(g, WAN22_HIGH_NOISE, "high", 40, 60)
    low, low_lora, low_shift = _wan_expert(g, WAN22_LOW_NOISE, "low", 40, 210)
    clip = g.add("CLIPLoader", (40, 360), (420, 110), title="umT5-XXL (Load CLIP, type wan)", clip_name=UMT5.name,
                 type="wan", device="default")
    vae = g.add("VAELoader", (530, 360), (380, 60), title="Wan 2.1 VAE", vae_name=WAN21_VAE.name)
    g.group("Models: Wan 2.2 T2V A14B experts, style LoRA on both, shift", [high, high_lora, high_shift, low, low_lora,
                                                                             low_shift, clip, vae], GROUP_COLORS["models"])
    load = g.add("PV_LoadSIAAdapter", (1340, 60), (380, 80), title="Load SIA Adapter (models/sia)",
                 adapter_name=ADAPTER_FILE)
    apply = g.add("PV_ApplySIALateSteps", (1340, 200), (380, 110), title="Apply SIA at Late Steps (low-noise expert)",
                  strength=STRENGTH, start_percent=START_PERCENT, end_percent=END_PERCENT)
    g.link(low_shift, "MODEL", apply, "model")
    g.link(load, "sia_adapter", apply, "sia_adapter")
    g.group("Identity: on the low-noise expert only", [load, apply], GROUP_COLORS["identity"])
    pos, neg, latent = _wan_prompt(g, load, clip, WAN_PROMPT, (WAN_LENGTH, WAN_WIDTH, WAN_HEIGHT),
                                   [(40, 610), (530, 610), (530, 760), (1000, 610)])
    first = _wan_sampler(g, "high", 1800, 60, first=True)
    g.link(high_shift, "MODEL", first, "model")
    second = _wan_sampler(g, "low", 1800, 470, first=False)
    g.link(apply, "model", second, "model")
    for sampler in (first, second):
        g.link(pos, "CONDITIONING", sampler, "positive")
        g.link(neg, "CONDITIONING", sampler, "negative")
    g.link(latent, "LATENT", first, "latent_image")
    g.link(first, "LATENT", second, "latent_image")
    g.group("Two experts, one schedule", [first, second], GROUP_COLORS["train"])
    _wan_decode_and_save(g, second, vae, 2220, "PersonalVideo/wan22_identity")
    g.note((1340, 400), (420, 560), WAN_MODEL_FILES_NOTE, title="Model files: where each goes")
    g.note((40, 980), (900, 300), WAN_NOTE, title="Wan 2.2: two experts, identity and style")
    return g


# ---------------------------------------------------------------- 09: Wan 2.1 1.3B, train and generate
WAN13_FRAMES, WAN13_SIZE = 33, 480


def wan_train_and_generate() -> Graph:
    g = Graph("09_wan_train_and_generate", "PersonalVideo 09: train an identity on Wan 2.1 1.3B and generate with it")
    unet = g.add("UNETLoader", (40, 60), (380, 90), title="Wan 2.1 T2V 1.3B (Load Diffusion Model)",
                 unet_name=WAN21_T2V_1_3B.name, weight_dtype="default")
    shift = g.add("ModelSamplingSD3", (40, 210), (300, 60), title="Shift", shift=WAN_SHIFT)
    g.link(unet, "MODEL", shift, "model")
    clip = g.add("CLIPLoader", (40, 330), (380, 110), title="umT5-XXL (Load CLIP, type wan)", clip_name=UMT5.name,
                 type="wan", device="default")
    vae = g.add("VAELoader", (40, 500), (380, 60), title="Wan 2.1 VAE", vae_name=WAN21_VAE.name)
    g.group("Models: Wan 2.1 T2V 1.3B, umT5, VAE, shift", [unet, shift, clip, vae], GROUP_COLORS["models"])
    photo = g.add("LoadImage", (500, 60), (380, 360), title="Reference photo (ComfyUI/input)", image=REFERENCE_PHOTO)
    faces = g.add("PV_LoadFaceAnalysis", (500, 490), (380, 90), model_pack="antelopev2", provider="auto")
    g.group("Reference photo and face models", [photo, faces], GROUP_COLORS["identity"])
    train = g.add("PV_TrainIdentityWan", (980, 60), (420, 700), title="Train PersonalVideo Identity (Wan)",
                  identity_name=IDENTITY, class_word=CLASS_WORD, prompts=_default_prompts(), ti_steps=0,
                  sia_iterations=400, sia_learning_rate=1e-4, sia_rank=4, reg_lambda=1e-2, frames=17, width=448,
                  height=448, sampling_lora="none", sampling_lora_strength=1.0, sampling_steps=0, training_cfg=0.0,
                  seed=0, if_exists="reuse", checkpoint_every=50, negative_prompt=WAN_NEGATIVE, resume=True,
                  early_stop=False, gradient_checkpointing="auto")
    _train_links(g, train, (shift, "MODEL"), (clip, "CLIP"), (vae, "VAE"), photo, faces)
    g.group("Train", [train], GROUP_COLORS["train"])
    apply = _results_and_apply(g, train, shift)
    pos, neg, latent = _wan_prompt(g, train, clip, WAN_PROMPT_13B, (WAN13_FRAMES, WAN13_SIZE, WAN13_SIZE),
                                   [(1960, 60), (1960, 290), (1960, 430), (1960, 620)])
    sampler = g.add("KSampler", (2460, 60), (340, 470), seed=SEED, steps=WAN_STEPS, cfg=5.0,
                    sampler_name=WAN_SAMPLER, scheduler=WAN_SCHEDULER, denoise=1.0)
    g.link(apply, "model", sampler, "model")
    g.link(pos, "CONDITIONING", sampler, "positive")
    g.link(neg, "CONDITIONING", sampler, "negative")
    g.link(latent, "LATENT", sampler, "latent_image")
    _wan_decode_and_save(g, sampler, vae, 2880, "PersonalVideo/wan_identity")
    g.note((40, 640), (440, 520), WAN_TRAIN_NOTE, title="Start here")
    return g


WAN_PROMPT_13B = "{identity} walking along a river bank in spring, cherry blossoms falling, turning to smile"


WORKFLOWS = (train_identity, generate_with_identity, generate_with_pose, generate_with_style_lora,
             train_and_generate, generate_and_score, generate_with_face_detail, two_identities,
             wan_train_and_generate, wan22_identity_and_style)


def build_all() -> dict:
    """{relative path: json text} of every UI file and API twin."""
    files = {}
    for make in WORKFLOWS:
        g = make()
        files[f"{g.name}.json"] = json.dumps(g.to_ui(), indent=1) + "\n"
        files[f"api/{g.name}.json"] = json.dumps(g.to_api(), indent=1) + "\n"
    return files


def stale_files(files: dict, out: Path = WORKFLOWS_DIR) -> list:
    """The paths of ``files`` (from :func:`build_all`) missing from ``out`` or different there."""
    return [p for p, text in files.items() if not (out / p).exists() or (out / p).read_text() != text]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) the example workflows.")
    parser.add_argument("--check", action="store_true", help="exit 1 if workflows/ differs from the description")
    parser.add_argument("--out", type=Path, default=WORKFLOWS_DIR)
    args = parser.parse_args(argv)
    files = build_all()
    stale = stale_files(files, args.out)
    if args.check:
        for p in stale:
            print(f"out of date: {args.out / p}")
        return 1 if stale else 0
    for p, text in files.items():
        path = args.out / p
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(files)} files in {args.out} ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
