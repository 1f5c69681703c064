"""The token stage of Train PersonalVideo Identity (Wan), on the real host: a tiny random Wan model, the umT5 test
double (tests/umt5_double), core's Wan 2.1 VAE with random weights and the centre-face stack.

With ti_steps above 0 the node trains the token first, then the adapter on prompts with the token in them, and
writes both files (the token under core's umT5 key). A stock CLIP Text Encode on the CLIP of 'Wan CLIP Reads
Embeddings', given the trigger phrase, makes the very conditioning the adapter stage ran the Wan model on; the
user's CLIP is unchanged. Reuse by record skips training (and writes a missing token file again from the adapter),
a token-stage checkpoint resumes bit for bit, Cancel in the token stage leaves no file. Skip on hosts without core
Wan."""
import os

import pytest
import torch

import wan_models

wan_models.skip_without_wan()

import nodes  # noqa: E402
from comfyui_personalvideo.nodes.wan_clip_reads_embeddings import WanCLIPReadsEmbeddings  # noqa: E402
from comfyui_personalvideo.training import identity_files, run_state, wan_identity_training  # noqa: E402
from comfyui_personalvideo.training.errors import TrainingError  # noqa: E402
from comfyui_personalvideo.training.wan_token import wan_class_word_vector  # noqa: E402
from safetensors import safe_open  # noqa: E402

import tiny_models  # noqa: E402
from face_fixtures import tiny_onnx  # noqa: E402,F401
from test_train_identity import assert_same, face_analysis, leftovers, photo  # noqa: E402,F401
from test_wan_train_node import PROMPTS, parts, train, user_state  # noqa: E402,F401

TOKEN = dict(ti_steps=2, ti_learning_rate=5e-2, ti_batch_size=1)
NAME = "wan_token_node"


def text_embedding_inputs(model):
    """Records the text conditioning the Wan model gets at every call (the input of its text_embedding)."""
    seen = []
    layer = model.model.diffusion_model.text_embedding
    handle = layer.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().float().clone()))
    return seen, handle


def tokenizer_state(clip):
    inner = getattr(clip.tokenizer, clip.tokenizer.clip)
    return id(clip.tokenizer), id(inner), inner.embedding_directory


@pytest.fixture(scope="module")
def token_run(parts, face_analysis, photo):  # noqa: F811
    before, tokenizer = user_state(parts), tokenizer_state(parts[1])
    seen, handle = text_embedding_inputs(parts[0])
    try:
        result, ui = train(parts, face_analysis, photo, NAME, **TOKEN)
    finally:
        handle.remove()
    return result, ui, seen, before, user_state(parts), tokenizer


def stock_encode(clip, text):
    with torch.inference_mode():
        (cond,) = nodes.CLIPTextEncode().encode(clip, text)
    return cond[0][0]


def test_the_node_trains_the_token_then_the_adapter_and_writes_both(parts, token_run):
    (adapter, trigger, *_), ui, _, _, _, _ = token_run
    assert trigger == f"embedding:{NAME} person" and ui["text"] == [trigger]
    paths = identity_files.identity_paths(NAME)
    assert all(os.path.isfile(p) for p in paths.values())
    with safe_open(paths["embedding"], framework="pt", device="cpu") as f:
        assert list(f.keys()) == ["umt5xxl"]   # core's umT5 embedding key
        token = f.get_tensor("umt5xxl")
    assert token.shape == (1, 4096) and token.dtype == torch.float32
    assert torch.equal(token, adapter.embedding)
    assert not torch.equal(token.reshape(-1), wan_class_word_vector(parts[1], "person"))   # trained
    training = adapter.info.training
    assert training["record"]["settings"]["ti_steps"] == 2 and len(training["history"]["token_loss"]) == 2
    assert not leftovers()


def test_a_stock_clip_text_encode_on_the_reading_clip_gives_what_training_used(parts, token_run):
    """The trigger phrase in each training prompt, encoded by CLIP Text Encode on the CLIP 'Wan CLIP Reads
    Embeddings' gives: bit for bit the conditioning the Wan model got in the adapter stage's last iterations."""
    (adapter, trigger, *_), _, seen, _, _, _ = token_run
    (reading,) = WanCLIPReadsEmbeddings().clip(parts[1], adapter)
    stock = [stock_encode(reading, line.replace("{token} {class_word}", trigger)) for line in PROMPTS.split("\n")]
    last = seen[-1].to(stock[0].dtype)
    assert any(torch.equal(last, s) for s in stock)
    # on the user's own CLIP the same text is read as words: the token is not there
    plain = stock_encode(parts[1], PROMPTS.split("\n")[0].replace("{token} {class_word}", trigger))
    assert not torch.equal(plain, stock[0])


def test_the_users_clip_model_and_vae_are_unchanged(parts, token_run):
    _, _, _, before, after, tokenizer = token_run
    assert_same(before[0], after[0])
    assert before[1:] == after[1:]
    WanCLIPReadsEmbeddings().clip(parts[1])
    assert tokenizer_state(parts[1]) == tokenizer


def test_the_reading_clip_refuses_a_clip_that_is_not_umt5():
    with torch.inference_mode():
        sd_clip = tiny_models.tiny_clip()
    with pytest.raises(TrainingError, match="the CLIP input is not Wan's umT5-XXL"):
        WanCLIPReadsEmbeddings().clip(sd_clip)


def test_reuse_skips_training_and_writes_a_missing_token_file_again(parts, face_analysis, photo, token_run):  # noqa: F811
    (adapter, trigger, *_), *_ = token_run
    token = identity_files.identity_paths(NAME)["embedding"]
    kept = identity_files.read_token(token)
    os.unlink(token)
    seen, handle = text_embedding_inputs(parts[0])
    try:
        (again, again_trigger, *_), ui = train(parts, face_analysis, photo, NAME, **dict(TOKEN, if_exists="reuse"))
    finally:
        handle.remove()
    assert not seen   # nothing ran the model
    assert again_trigger == trigger and ui["text"] == [f"{trigger} (reused)"]
    assert torch.equal(again.embedding, adapter.embedding)
    assert all(torch.equal(again.up[p], adapter.up[p]) for p in adapter.paths)
    with safe_open(token, framework="pt", device="cpu") as f:
        assert list(f.keys()) == ["umt5xxl"] and torch.equal(f.get_tensor("umt5xxl"), kept)


def run(parts, face_analysis, photo, name, **overrides):  # noqa: F811
    """train_wan_identity, what the node calls, with a progress hook."""
    from test_wan_train_node import SMALL

    model, clip, vae = parts
    inputs = dict(SMALL, **TOKEN, model=model, clip=clip, vae=vae, reference_images=photo,
                  face_analysis=face_analysis, identity_name=name, sampling_lora=None)
    inputs.update(overrides)
    with torch.inference_mode():
        return wan_identity_training.train_wan_identity(**inputs)


def cancelled_at(parts, face_analysis, photo, name, stage, step, **settings):  # noqa: F811
    from test_train_reuse import _cancelled_at

    _cancelled_at(parts, face_analysis, photo, name, stage, step, settings, run_with=run)


def test_a_token_stage_checkpoint_resumes_to_the_uninterrupted_result(parts, face_analysis, photo):  # noqa: F811
    settings = dict(ti_steps=4, sia_iterations=2, checkpoint_every=2, resume=True)
    whole = run(parts, face_analysis, photo, "wan_token_whole", **settings)
    cancelled_at(parts, face_analysis, photo, "wan_token_stopped", "token", 2, **settings)
    assert identity_files.existing("wan_token_stopped") == []
    ran = []
    resumed = run(parts, face_analysis, photo, "wan_token_stopped", progress_hook=lambda *a: ran.append(a[:2]),
                  **settings)
    assert resumed["resumed_from"] == ("token", 2) and ran[0] == ("token", 2)
    assert resumed["token_losses"] == whole["token_losses"] and len(whole["token_losses"]) == 4
    assert torch.equal(resumed["vector"], whole["vector"])
    assert resumed["history"].loss == whole["history"].loss
    for p in whole["adapter"].paths:
        assert torch.equal(resumed["adapter"].up[p], whole["adapter"].up[p])
    assert not os.path.exists(run_state.state_folder("wan_token_stopped"))


def test_an_adapter_stage_checkpoint_keeps_the_token(parts, face_analysis, photo):  # noqa: F811
    settings = dict(ti_steps=2, sia_iterations=3, checkpoint_every=1, resume=True)
    whole = run(parts, face_analysis, photo, "wan_token_whole2", **settings)
    cancelled_at(parts, face_analysis, photo, "wan_token_stopped2", "adapter", 1, **settings)
    ran = []
    resumed = run(parts, face_analysis, photo, "wan_token_stopped2", progress_hook=lambda *a: ran.append(a[:2]),
                  **settings)
    assert resumed["resumed_from"][0] == "adapter" and ran and not [r for r in ran if r[0] == "token"]
    assert torch.equal(resumed["vector"], whole["vector"]) and resumed["token_losses"] == whole["token_losses"]
    for p in whole["adapter"].paths:
        assert torch.equal(resumed["adapter"].up[p], whole["adapter"].up[p])


def test_cancel_in_the_token_stage_leaves_no_file_and_the_models_unchanged(parts, face_analysis, photo):  # noqa: F811
    before = user_state(parts)
    cancelled_at(parts, face_analysis, photo, "wan_token_cancelled", "token", 0, resume=False)
    assert identity_files.existing("wan_token_cancelled") == [] and not leftovers()
    assert not os.path.exists(run_state.state_folder("wan_token_cancelled"))
    after = user_state(parts)
    assert_same(before[0], after[0])
    assert before[1:] == after[1:]


def test_load_sia_adapter_gives_the_wan_token_back_as_a_umt5_file(token_run):
    from comfyui_personalvideo.nodes.load_sia_adapter import LoadSIAAdapter

    (adapter, trigger, *_), *_ = token_run
    token = identity_files.identity_paths(NAME)["embedding"]
    os.unlink(token)
    loaded, loaded_trigger = LoadSIAAdapter().load(f"{NAME}.safetensors")
    assert loaded_trigger == trigger and loaded.info.base == "wan"
    assert torch.equal(loaded.embedding, adapter.embedding)
    with safe_open(token, framework="pt", device="cpu") as f:
        assert list(f.keys()) == ["umt5xxl"] and torch.equal(f.get_tensor("umt5xxl"), adapter.embedding)
