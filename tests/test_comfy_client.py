"""tools/comfy_client.py against a running host: refused prompts become PromptError with the host's reasons."""
import pytest

import host  # noqa: F401  (makes tools/ importable as pv_tools)
from pv_tools.comfy_client import PromptError, run_prompt


def test_a_prompt_naming_a_missing_checkpoint_is_refused_with_the_node_and_file(comfy_server):
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "no_such_model.safetensors"}},
              "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
              "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 2]}},
              "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "pv_client"}}}
    with pytest.raises(PromptError) as err:
        run_prompt(comfy_server.url, prompt, timeout=60)
    assert "the server refused the prompt" in str(err.value)
    assert "node 1 (CheckpointLoaderSimple)" in str(err.value) and "no_such_model.safetensors" in str(err.value)


def test_an_unknown_node_type_is_a_prompt_error_on_every_host(comfy_server):
    # the 2024 host answers this with HTTP 500 and a plain-text body, newer ones with JSON
    prompt = {"1": {"class_type": "PV_NoSuchNode", "inputs": {}}}
    with pytest.raises(PromptError, match="the server refused the prompt"):
        run_prompt(comfy_server.url, prompt, timeout=60)
