"""Stage 1 on core Wan (training/wan_token.py): the identity token in umT5's input space, trained with Wan's
flow-matching loss on a tiny random Wan model, core's Wan 2.1 VAE (random weights, real size) and the TEST
DOUBLE of umT5 (tests/umt5_double: core's umT5 classes, tokenizer class and loader at tiny widths; core builds
umT5-XXL from a 5.7B-parameter config, too big here). Only the vector changes and only it gets a gradient, the
objective on training's own draws falls by more than chance, the seed decides the vector, Cancel stops inside a
step, and the saved file read through core's prompt path gives the conditioning training used. Skip on hosts
without core Wan (the default 2024 host predates it)."""
import pytest
import torch

import wan_models

wan_models.skip_without_wan()

import comfy.model_management  # noqa: E402
import comfy.sd  # noqa: E402
import nodes  # noqa: E402
import tiny_models  # noqa: E402
import umt5_double  # noqa: E402
from comfy import sd1_clip  # noqa: E402
from comfyui_personalvideo.training import textual_inversion as ti  # noqa: E402
from comfyui_personalvideo.training import wan_token  # noqa: E402
from comfyui_personalvideo.training.errors import TrainingError  # noqa: E402
from pv_tools.random_wan_models import wan21_vae_state_dict  # noqa: E402
from umt5_double.build import tiny_umt5_state_dict  # noqa: E402

from test_train_identity import assert_same, photo, snapshot  # noqa: E402,F401

SETTINGS = dict(steps=3, lr=5e-2, batch_size=2, seed=0, gradient_checkpointing="off", precision="fp32")


@pytest.fixture(scope="module")
def wan():
    with torch.inference_mode():
        return wan_models.with_shift(wan_models.tiny_wan_model(seed=0), 8.0)


@pytest.fixture(scope="module")
def wan_vae():
    with torch.inference_mode():
        return comfy.sd.VAE(sd=wan21_vae_state_dict(seed=0))


@pytest.fixture(scope="module")
def umt5(tmp_path_factory):
    """Core's Wan CLIP (umT5) from the double's file, loaded by core's loader with an embeddings folder, as
    CLIPLoader loads it."""
    umt5_double.install()
    folder = tmp_path_factory.mktemp("embeddings")
    with torch.inference_mode():
        clip = comfy.sd.load_text_encoder_state_dicts([tiny_umt5_state_dict(seed=0)], embedding_directory=[str(folder)],
                                                      clip_type=comfy.sd.CLIPType.WAN)
    clip.embeddings = folder
    return clip


def train(wan, umt5, wan_vae, photo, **kw):  # noqa: F811
    settings = ti.TISettings(**dict(SETTINGS, **kw.pop("settings", {})))
    with torch.inference_mode():
        return wan_token.train_wan_token(wan, umt5, wan_vae, photo, "man", settings, **kw)


def test_training_changes_the_vector_and_nothing_of_wan_umt5_or_the_vae(wan, umt5, wan_vae, photo):  # noqa: F811
    comfy.model_management.unload_all_models()
    before = snapshot(wan.model, umt5.cond_stage_model, wan_vae.first_stage_model)
    start = wan_token.wan_class_word_vector(umt5, "man")
    vector, prompts, losses = train(wan, umt5, wan_vae, photo)
    comfy.model_management.unload_all_models()
    assert vector.shape == (4096,) and vector.dtype == torch.float32 and not vector.requires_grad
    assert len(losses) == 3 and all(loss == loss and loss > 0 for loss in losses), losses
    assert not torch.equal(vector, start)
    assert isinstance(prompts, wan_token.WanTokenPrompts)
    assert_same(before, snapshot(wan.model, umt5.cond_stage_model, wan_vae.first_stage_model))
