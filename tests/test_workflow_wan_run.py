"""Workflow 10 (Wan 2.2 A14B: two experts in two KSamplerAdvanced, the identity on the low-noise expert, a style
LoRA on both) runs to completion over HTTP on a host with core Wan, through core's own loaders and samplers.

Files, all random: two tiny Wan experts (tools/random_wan_models.py; core detects the size from the weights), a
Wan 2.1 VAE at its real size (core builds it from a fixed config), a random style LoRA on every linear layer of
the experts, a random Wan identity adapter, and the TEST DOUBLE of umT5 (tests/umt5_double: core builds umT5-XXL
from a fixed 5.7B-parameter config, too big here; the double keeps core's loader, classes, tokenizer class and
output shape). The 2024 host has no Wan: there these tests skip and say why.
"""
import numpy as np
import pytest

import wan_models

wan_models.skip_without_wan()

from comfyui_personalvideo.sia import save_adapter  # noqa: E402
from pv_tools import random_wan_models, workflow_graph  # noqa: E402

from face_fixtures import tiny_onnx  # noqa: E402,F401
from umt5_double.build import save_tiny_umt5  # noqa: E402

pytestmark = [pytest.mark.server, pytest.mark.slow]

NAME = "10_wan22_identity_and_style"
HIGH, LOW = "wan22_high_noise_random.safetensors", "wan22_low_noise_random.safetensors"
UMT5, VAE = "umt5_tiny_test_double.safetensors", "wan_2.1_vae_random.safetensors"
STYLE, IDENTITY = "wan_style_random.safetensors", "wan_run"
LENGTH = 5   # frames: 2 latent frames (Wan's VAE: 4x in time, first frame alone)


@pytest.fixture(scope="module")
def served(comfy_server):
    models = comfy_server.models
    for seed, name in enumerate((HIGH, LOW)):
        random_wan_models.save_wan_model(str(models / "diffusion_models" / name), "tiny", seed=seed)
    save_tiny_umt5(str(models / "text_encoders" / UMT5))
    random_wan_models.save_wan21_vae(str(models / "vae" / VAE))
    random_wan_models.save_wan_style_lora(str(models / "loras" / STYLE))
    adapter = wan_models.random_wan_adapter(wan_models.tiny_wan_model(seed=1), name=IDENTITY, std=0.5)
    adapter.info.trigger = f"embedding:{IDENTITY} person"
    save_adapter(adapter, str(models / "sia" / f"{IDENTITY}.safetensors"))
    return comfy_server


def prepared(steps=4, switch=2, strength=1.0):
    """The twin with the random files, 5 frames of 64x64, ``steps`` steps switching experts at ``switch``."""
    wf = workflow_graph.configure(workflow_graph.load(NAME), identity=IDENTITY, text_encoder=UMT5, vae=VAE,
                                  width=64, height=64, length=LENGTH)
    workflow_graph.set_input(wf, "Wan 2.2 high-noise expert (Load Diffusion Model)", "unet_name", HIGH)
    workflow_graph.set_input(wf, "Wan 2.2 low-noise expert (Load Diffusion Model)", "unet_name", LOW)
    workflow_graph.set_input(wf, "LoraLoaderModelOnly", "lora_name", STYLE)
    workflow_graph.set_input(wf, "KSamplerAdvanced", "steps", steps)
    first, second = sorted(workflow_graph.find(wf, "KSamplerAdvanced"), key=lambda n: wf[n]["inputs"]["start_at_step"])
    wf[first]["inputs"]["end_at_step"] = switch
    wf[second]["inputs"]["start_at_step"] = switch
    workflow_graph.set_input(wf, "PV_ApplySIALateSteps", "strength", strength)
    return wf


def run(server, wf):
    status, body = server.post_prompt(wf)
    assert status == 200, body
    entry = server.wait(body["prompt_id"], 600)
    errors = [m for m in entry["status"].get("messages", []) if m[0] == "execution_error"]
    assert not errors, errors[0][1]
    return entry


def frames(server, entry, wf):
    """The frames of the saved animated WEBP (checked: LENGTH frames of 64x64), as float arrays."""
    from PIL import Image

    (save,) = workflow_graph.find(wf, "SaveAnimatedWEBP")
    (saved,) = [server.output / f.get("subfolder", "") / f["filename"]
                for f in workflow_graph.outputs_of(entry, save)["images"] if f.get("type") == "output"]
    with Image.open(saved) as im:
        assert im.format == "WEBP" and im.n_frames == LENGTH and im.size == (64, 64)
        out = []
        for i in range(im.n_frames):
            im.seek(i)
            out.append(np.asarray(im.convert("RGB"), dtype=np.float32))
    return np.stack(out)


def test_wan_workflow_runs_both_experts_with_the_identity_in_the_low_noise_experts_last_quarter(served):
    wf = prepared()
    video = frames(served, run(served, wf), wf)
    assert video.std() > 0
    log = served.log(400000)
    assert f"[PersonalVideo] SIA {IDENTITY}: " in log
    assert "clip missing" not in log   # the umT5 double's file fills core's umT5 model entirely
    # the identity changes the video: the same graph with the adapter at strength 0 gives another one
    plain = prepared(strength=0.0)
    assert np.abs(frames(served, run(served, plain), plain) - video).max() > 0



TRAINED = "wan_trained_run"
MODEL_13B = "wan21_1.3B_random.safetensors"


def test_wan_train_and_generate_workflow_trains_the_identity_and_generates_with_it(served, tiny_onnx):  # noqa: F811
    """Workflow 09: Train PersonalVideo Identity (Wan) on a tiny Wan in place of the 1.3B model (2 iterations of
    1-frame 64x64 clips), then the video with the new adapter: the adapter file is written (no token file), the
    video is saved, and the identity is applied in the run."""
    import cv2

    import face_fixtures as ff

    models = served.models
    random_wan_models.save_wan_model(str(models / "diffusion_models" / MODEL_13B), "tiny", seed=5)
    ff.centre_face_pack(models / "insightface", recognizer=tiny_onnx)
    served.input.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(served.input / "person_wan.png"), cv2.resize(ff.photo_bgr("astronaut"), (64, 64)))
    wf = workflow_graph.load("09_wan_train_and_generate")
    for selector, name, value in (("UNETLoader", "unet_name", MODEL_13B), ("CLIPLoader", "clip_name", UMT5),
                                  ("VAELoader", "vae_name", VAE), ("LoadImage", "image", "person_wan.png"),
                                  ("PV_LoadFaceAnalysis", "provider", "CPU"),
                                  ("PV_TrainIdentityWan", "identity_name", TRAINED),
                                  ("PV_TrainIdentityWan", "sia_iterations", 2), ("PV_TrainIdentityWan", "frames", 1),
                                  ("PV_TrainIdentityWan", "width", 64), ("PV_TrainIdentityWan", "height", 64),
                                  ("PV_TrainIdentityWan", "sampling_steps", 2),
                                  ("PV_TrainIdentityWan", "training_cfg", 1.0),
                                  ("PV_TrainIdentityWan", "if_exists", "overwrite"),
                                  ("EmptyHunyuanLatentVideo", "width", 64), ("EmptyHunyuanLatentVideo", "height", 64),
                                  ("EmptyHunyuanLatentVideo", "length", LENGTH), ("KSampler", "steps", 2)):
        workflow_graph.set_input(wf, selector, name, value)
    video = frames(served, run(served, wf), wf)
    assert video.std() > 0
    assert [p for p in (served.yaml_sia / f"{TRAINED}.safetensors", models / "sia" / f"{TRAINED}.safetensors")
            if p.exists()]
    assert not (models / "embeddings" / f"{TRAINED}.safetensors").exists()
    assert f"[PersonalVideo] SIA {TRAINED}" in served.log(400000)
