"""The node types the example workflows use: sockets, widgets and outputs in the order the frontend
builds them, and which custom node pack provides each third-party type.

Data only, read by the workflow builder (``tools.workflow_builder``). Tests check every entry against the
host's /object_info and against the node definitions recorded from the third-party packs' real code
(tests/data/node_definitions). A new node type in a workflow needs its entry here first.
"""
from __future__ import annotations

# sockets: (name, type) in slot order; widgets: names in widgets_values order (a seed carries a control
# value after it); outputs: (name, type). "dict_widgets": the pack saves widgets_values as {name: value}.
SEED_WIDGETS = ("seed", "noise_seed")


# Model folders whose files nobody downloads as one file from a workflow: the user's own trained adapters,
# insightface's model packs (folders of .onnx files; the README and the node's error say where to get them) and the
# detectors comfyui_controlnet_aux fetches by itself.
NO_DOWNLOAD = {"sia": "written by Train PersonalVideo Identity", "insightface": "an insightface model pack (a folder)",
               "controlnet_aux": "comfyui_controlnet_aux downloads its detectors itself on first use"}


def spec(sockets=(), widgets=(), outputs=(), dict_widgets=False, ui_only=False, extra_ui_widgets=(),
         optional_sockets=(), model_widgets=None):
    """``optional_sockets``: optional inputs listed in a node's UI inputs only where a workflow links them.
    ``model_widgets``: {widget: ComfyUI models folder} for a loader's widgets that name a model file (the builder
    writes those files' download metadata into the node)."""
    return dict(sockets=list(sockets), widgets=list(widgets), outputs=list(outputs), dict_widgets=dict_widgets,
                ui_only=ui_only, extra_ui_widgets=list(extra_ui_widgets), optional_sockets=list(optional_sockets),
                model_widgets=dict(model_widgets or {}))


NODE_SPECS = {
    # ComfyUI core
    "CheckpointLoaderSimple": spec(widgets=["ckpt_name"], outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"),
                                                                    ("VAE", "VAE")],
                                   model_widgets={"ckpt_name": "checkpoints"}),
    "LoraLoaderModelOnly": spec([("model", "MODEL")], ["lora_name", "strength_model"], [("MODEL", "MODEL")],
                                model_widgets={"lora_name": "loras"}),
    "LoraLoader": spec([("model", "MODEL"), ("clip", "CLIP")], ["lora_name", "strength_model", "strength_clip"],
                       [("MODEL", "MODEL"), ("CLIP", "CLIP")], model_widgets={"lora_name": "loras"}),
    "CLIPTextEncode": spec([("clip", "CLIP")], ["text"], [("CONDITIONING", "CONDITIONING")]),
    "EmptyLatentImage": spec(widgets=["width", "height", "batch_size"], outputs=[("LATENT", "LATENT")]),
    "KSampler": spec([("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                      ("latent_image", "LATENT")],
                     ["seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"], [("LATENT", "LATENT")]),
    "VAEDecode": spec([("samples", "LATENT"), ("vae", "VAE")], outputs=[("IMAGE", "IMAGE")]),
    "SaveAnimatedWEBP": spec([("images", "IMAGE")], ["filename_prefix", "fps", "lossless", "quality", "method"]),
    "SaveImage": spec([("images", "IMAGE")], ["filename_prefix"]),
    "PreviewImage": spec([("images", "IMAGE")]),
    "LoadImage": spec(widgets=["image"], outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")],
                      extra_ui_widgets=["upload"]),
    "ControlNetLoader": spec(widgets=["control_net_name"], outputs=[("CONTROL_NET", "CONTROL_NET")],
                             model_widgets={"control_net_name": "controlnet"}),
    "ControlNetApplyAdvanced": spec([("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                                     ("control_net", "CONTROL_NET"), ("image", "IMAGE")],
                                    ["strength", "start_percent", "end_percent"],
                                    [("positive", "CONDITIONING"), ("negative", "CONDITIONING")]),
    "ConditioningSetMask": spec([("conditioning", "CONDITIONING"), ("mask", "MASK")], ["strength", "set_cond_area"],
                                [("CONDITIONING", "CONDITIONING")]),
    "ConditioningCombine": spec([("conditioning_1", "CONDITIONING"), ("conditioning_2", "CONDITIONING")],
                                outputs=[("CONDITIONING", "CONDITIONING")]),
    "Note": spec(widgets=["text"], ui_only=True),
    # ComfyUI core, Wan (ComfyUI 0.3.3x and newer)
    "UNETLoader": spec(widgets=["unet_name", "weight_dtype"], outputs=[("MODEL", "MODEL")],
                       model_widgets={"unet_name": "diffusion_models"}),
    "CLIPLoader": spec(widgets=["clip_name", "type", "device"], outputs=[("CLIP", "CLIP")],
                       model_widgets={"clip_name": "text_encoders"}),
    "VAELoader": spec(widgets=["vae_name"], outputs=[("VAE", "VAE")], model_widgets={"vae_name": "vae"}),
    "ModelSamplingSD3": spec([("model", "MODEL")], ["shift"], [("MODEL", "MODEL")]),
    "EmptyHunyuanLatentVideo": spec(widgets=["width", "height", "length", "batch_size"],
                                    outputs=[("LATENT", "LATENT")]),
    "KSamplerAdvanced": spec([("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                              ("latent_image", "LATENT")],
                             ["add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "start_at_step",
                              "end_at_step", "return_with_leftover_noise"], [("LATENT", "LATENT")]),
    # this pack
    "PV_LoadSIAAdapter": spec(widgets=["adapter_name"], outputs=[("sia_adapter", "SIA_ADAPTER"),
                                                                 ("trigger_phrase", "STRING")],
                              model_widgets={"adapter_name": "sia"}),
    "PV_ApplySIALateSteps": spec([("model", "MODEL"), ("sia_adapter", "SIA_ADAPTER")],
                                 ["strength", "start_percent", "end_percent"], [("model", "MODEL")],
                                 optional_sockets=[("mask", "MASK")]),
    "PV_IdentityPrompt": spec([("trigger_phrase", "STRING")], ["text"], [("prompt", "STRING")]),
    "PV_LoadFaceAnalysis": spec(widgets=["model_pack", "provider"], outputs=[("face_analysis", "FACEANALYSIS")],
                                model_widgets={"model_pack": "insightface"}),
    "PV_TrainIdentity": spec(
        [("model", "MODEL"), ("clip", "CLIP"), ("vae", "VAE"), ("reference_images", "IMAGE"),
         ("face_analysis", "FACEANALYSIS"), ("image_model", "MODEL")],
        ["identity_name", "class_word", "prompts", "ti_steps", "ti_learning_rate", "ti_batch_size", "sia_iterations",
         "sia_learning_rate", "sia_rank", "reg_lambda", "frames", "width", "height", "sampling_steps", "seed",
         "if_exists", "checkpoint_every", "training_cfg", "negative_prompt", "resume", "early_stop",
         "gradient_checkpointing"],
        [("sia_adapter", "SIA_ADAPTER"), ("trigger_phrase", "STRING"), ("loss_curve", "IMAGE"),
         ("preview_frames", "IMAGE"), ("final_similarity", "FLOAT"), ("identity_score", "FLOAT")]),
    "PV_TrainIdentityWan": spec(
        [("model", "MODEL"), ("clip", "CLIP"), ("vae", "VAE"), ("reference_images", "IMAGE"),
         ("face_analysis", "FACEANALYSIS")],
        ["identity_name", "class_word", "prompts", "ti_steps", "sia_iterations", "sia_learning_rate", "sia_rank",
         "reg_lambda", "frames", "width", "height", "sampling_lora", "sampling_lora_strength", "sampling_steps",
         "training_cfg", "seed", "if_exists", "checkpoint_every", "negative_prompt", "resume", "early_stop",
         "gradient_checkpointing"],
        [("sia_adapter", "SIA_ADAPTER"), ("trigger_phrase", "STRING"), ("loss_curve", "IMAGE"),
         ("preview_frames", "IMAGE"), ("final_similarity", "FLOAT"), ("identity_score", "FLOAT")]),
    "PV_NoisePriorModel": spec([("model", "MODEL")], ["gamma"], [("model", "MODEL")]),
    "PV_FaceDetailPass": spec(
        [("images", "IMAGE"), ("face_analysis", "FACEANALYSIS"), ("model", "MODEL"), ("positive", "CONDITIONING"),
         ("negative", "CONDITIONING"), ("vae", "VAE")],
        ["seed", "steps", "cfg", "sampler_name", "scheduler", "denoise", "working_size", "padding", "mask_feather",
         "smoothing", "max_gap"],
        [("images", "IMAGE"), ("face_mask", "MASK"), ("track_preview", "IMAGE"), ("summary", "STRING")],
        optional_sockets=[("region", "MASK")]),
    "PV_ScoreIdentity": spec([("frames", "IMAGE"), ("reference_images", "IMAGE"), ("face_analysis", "FACEANALYSIS")],
                             ["recogniser", "detector", "max_frames", "fps"],
                             [("identity_match", "FLOAT"), ("frames_without_face", "INT"), ("chart", "IMAGE"),
                              ("report", "STRING"), ("report_json", "STRING")]),
    "PV_RegionHalves": spec([("latent", "LATENT")], ["split", "feather"], [("left", "MASK"), ("right", "MASK")]),
    # AnimateDiff-Evolved
    "ADE_AnimateDiffLoaderGen1": spec(
        [("model", "MODEL"), ("context_options", "CONTEXT_OPTIONS"), ("motion_lora", "MOTION_LORA"),
         ("ad_settings", "AD_SETTINGS"), ("ad_keyframes", "AD_KEYFRAMES"), ("sample_settings", "SAMPLE_SETTINGS"),
         ("scale_multival", "MULTIVAL"), ("effect_multival", "MULTIVAL"), ("per_block", "PER_BLOCK")],
        ["model_name", "beta_schedule"], [("MODEL", "MODEL")], model_widgets={"model_name": "animatediff_models"}),
    # VideoHelperSuite
    "VHS_LoadVideo": spec(
        [("meta_batch", "VHS_BatchManager"), ("vae", "VAE")],
        ["video", "force_rate", "custom_width", "custom_height", "frame_load_cap", "skip_first_frames",
         "select_every_nth", "format"],
        [("IMAGE", "IMAGE"), ("frame_count", "INT"), ("audio", "AUDIO"), ("video_info", "VHS_VIDEOINFO")],
        dict_widgets=True),
    "VHS_VideoCombine": spec(
        [("images", "IMAGE"), ("audio", "AUDIO"), ("meta_batch", "VHS_BatchManager"), ("vae", "VAE")],
        ["frame_rate", "loop_count", "filename_prefix", "format", "pix_fmt", "crf", "save_metadata",
         "trim_to_audio", "pingpong", "save_output"],
        [("Filenames", "VHS_FILENAMES")], dict_widgets=True),
    # comfyui_controlnet_aux
    "DWPreprocessor": spec(
        [("image", "IMAGE")],
        ["detect_hand", "detect_body", "detect_face", "resolution", "bbox_detector", "pose_estimator",
         "scale_stick_for_xinsr_cn"],
        [("IMAGE", "IMAGE"), ("POSE_KEYPOINT", "POSE_KEYPOINT")],
        model_widgets={"bbox_detector": "controlnet_aux", "pose_estimator": "controlnet_aux"}),
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
