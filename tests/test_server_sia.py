"""The SIA nodes in a running ComfyUI server, driven over its HTTP API like the frontend does."""
import os

import pytest
import torch

from comfyui_personalvideo.sia import AdapterInfo, SIAAdapter, save_adapter

import tiny_models

pytestmark = pytest.mark.server


def _link(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if not os.path.exists(dst):
        os.symlink(src, dst)


@pytest.fixture(scope="module")
def served_models(comfy_server, sd15_checkpoint):
    _link(sd15_checkpoint, str(comfy_server.models / "checkpoints" / "sd15_random.safetensors"))
    model = tiny_models.tiny_sd15_model(full_size=True, device="meta")
    from comfyui_personalvideo.sia import discover_targets

    adapter = SIAAdapter.initialise(discover_targets(model.model.diffusion_model).targets, rank=4, seed=3,
                                    info=AdapterInfo(name="served", trigger="embedding:served person"))
    for p in adapter.paths:
        adapter.up[p] = torch.randn(adapter.up[p].shape) * 0.05
    save_adapter(adapter, str(comfy_server.models / "sia" / "served.safetensors"))
    save_adapter(adapter, str(comfy_server.yaml_sia / "from_yaml.safetensors"))
    return comfy_server


def _graph(adapter="served.safetensors", strength=1.0, start=0.75):
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15_random.safetensors"}},
        "2": {"class_type": "PV_LoadSIAAdapter", "inputs": {"adapter_name": adapter}},
        "3": {"class_type": "PV_ApplySIALateSteps",
              "inputs": {"model": ["1", 0], "sia_adapter": ["2", 0], "strength": strength, "start_percent": start}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ["2", 1]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "6": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {
            "model": ["3", 0], "seed": 1, "steps": 4, "cfg": 1.0, "sampler_name": "lcm",
            "scheduler": "sgm_uniform", "positive": ["4", 0], "negative": ["5", 0], "latent_image": ["6", 0],
            "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "pv_sia_test"}},
    }


def test_object_info_describes_our_nodes(served_models):
    info = served_models.get("/object_info")
    load, apply = info["PV_LoadSIAAdapter"], info["PV_ApplySIALateSteps"]
    assert load["category"] == apply["category"] == "PersonalVideo"
    assert load["display_name"] == "Load SIA Adapter" and apply["display_name"] == "Apply SIA at Late Steps"
    assert load["output"] == ["SIA_ADAPTER", "STRING"]
    choices = load["input"]["required"]["adapter_name"][0]
    assert "served.safetensors" in choices          # ComfyUI/models/sia
    assert "from_yaml.safetensors" in choices       # a sia: folder from extra_model_paths.yaml
    assert apply["input"]["required"]["start_percent"][1]["default"] == 0.75
    assert apply["input"]["required"]["strength"][1]["tooltip"]


def test_generation_graph_runs_through_the_server(served_models):
    status, body = served_models.post_prompt(_graph())
    assert status == 200, body
    entry = served_models.wait(body["prompt_id"])
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = entry["outputs"]["9"]["images"]
    assert images and (served_models.output / images[0].get("subfolder", "") / images[0]["filename"]).exists()
    assert "[PersonalVideo] SIA served" in served_models.log()


def test_missing_adapter_fails_validation_with_a_clear_message(served_models):
    status, body = served_models.post_prompt(_graph(adapter="nobody.safetensors"))
    assert status == 400
    errors = str(body.get("node_errors", {}).get("2", body))
    assert "nobody.safetensors" in errors


@pytest.mark.parametrize("strength,start", [(9.0, 0.75), (1.0, 1.5)])
def test_out_of_range_widgets_fail_validation(served_models, strength, start):
    status, body = served_models.post_prompt(_graph(strength=strength, start=start))
    assert status == 400 and "3" in body.get("node_errors", {}), body
