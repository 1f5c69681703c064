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
from umt5_double.build import tiny_umt5_state_dict  # noqa: E402

from chance_level import random_move_drops  # noqa: E402
from test_train_identity import assert_same, photo, snapshot  # noqa: E402,F401
from test_wan_training import wan, wan_vae  # noqa: E402,F401  (a tiny Wan at shift 8, the Wan 2.1 VAE)

SETTINGS = dict(steps=3, lr=5e-2, batch_size=2, seed=0, gradient_checkpointing="off", precision="fp32")


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


def test_the_gradient_reaches_the_vector_and_only_the_vector(wan, umt5, wan_vae, photo):  # noqa: F811
    """One loss of training's first draw with gradient: the vector gets a non-zero gradient; no weight of
    Wan, umT5 or the VAE holds one, and none that autograd could record requires one (the weights loaded under
    inference mode are inference tensors, which autograd never records: the window reads them through aliases
    that require no gradient)."""
    settings = ti.TISettings(**SETTINGS)
    with torch.inference_mode():
        prompts, loss_of = wan_token._prepare_wan(wan, umt5, wan_vae, photo, "man", settings)
        from comfyui_personalvideo.training.identity_setup import token_streams
        from comfyui_personalvideo.training.inference_tensors import gradient_window, normal_tensors

        with normal_tensors():
            rng, gen = token_streams(0)
            vector = torch.nn.Parameter(wan_token.wan_class_word_vector(umt5, "man"))
        with gradient_window(wan.model.diffusion_model, umt5.cond_stage_model):
            loss = loss_of(vector, ti.draw_batch(rng, gen, loss_of.latents, 2))
            loss.backward()
    assert vector.grad is not None and float(vector.grad.abs().sum()) > 0
    for module in (wan.model, umt5.cond_stage_model, wan_vae.first_stage_model):
        for name, p in module.named_parameters():
            assert p.grad is None and (p.is_inference() or not p.requires_grad), name


def test_training_lowers_a_fixed_evaluation_loss_by_more_than_chance(wan, umt5, wan_vae, photo):  # noqa: F811
    """The flow-matching loss on the very draws training made (the token stage's streams of the seed),
    recomputed with one fixed vector at a time: deterministic. Training's first loss is that of the first
    draw at the starting vector (so they are training's draws). Training lowers the objective, and by more
    than moving the starting vector the same distance in random directions does (the chance level of this
    very problem, measured in the same run)."""
    steps, settings = 8, dict(steps=8, lr=5e-2, batch_size=2, seed=0)
    with torch.inference_mode():
        start = wan_token.wan_class_word_vector(umt5, "man")

        def objective(v, draws=steps):
            return wan_token.wan_evaluation_loss(wan, umt5, wan_vae, photo, "man", v, draws=draws, seed=0,
                                                 batch_size=2)

        before = objective(start)
        assert objective(start) == before
        vector, _, losses = train(wan, umt5, wan_vae, photo, settings=settings)
        first_draw = objective(start, draws=1)
        after = objective(vector)
        distance = float((vector - start).norm())
        random_drops = random_move_drops(objective, start, distance, before, 4)
    print("objective", before, after, "random moves' drops", random_drops, "losses", losses)
    assert len(losses) == steps and distance > 0
    assert abs(first_draw - losses[0]) <= 1e-5 * abs(losses[0]), (first_draw, losses[0])
    assert after < before, (before, after)
    assert before - after > max(random_drops), (before, after, random_drops)


def test_the_same_seed_gives_the_same_vector_bit_for_bit(wan, umt5, wan_vae, photo):  # noqa: F811
    a, _, losses_a = train(wan, umt5, wan_vae, photo)
    b, _, losses_b = train(wan, umt5, wan_vae, photo)
    c, _, _ = train(wan, umt5, wan_vae, photo, settings=dict(seed=1))
    assert torch.equal(a, b) and losses_a == losses_b
    assert not torch.equal(a, c)


def test_cancel_stops_inside_the_first_step(wan, umt5, wan_vae, photo):  # noqa: F811
    """Cancel is looked at before every Wan block: a Cancel raised at the third look (the loop's own look
    first, then before the first block) stops the run inside its first step, before any progress report."""
    looks, reported = [], []

    class Cancelled(Exception):
        pass

    def check():
        looks.append(1)
        if len(looks) == 3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        train(wan, umt5, wan_vae, photo, check_interrupt=check, progress=lambda step, loss: reported.append(step))
    assert len(looks) == 3 and reported == []


def test_the_saved_token_through_core_prompt_path_gives_the_trained_conditioning(wan, umt5, wan_vae, photo):  # noqa: F811
    """The file save_wan_token writes is read by core's load_embed for umT5 (key umt5xxl) as the vector, bit
    for bit; a stock CLIP Text Encode of ``a photo of embedding:<name> man`` on clip_reading_embeddings' clone
    gives exactly the conditioning training encoded with the vector in place of {token}, and not that of the
    starting vector. On the user's own CLIP, core's umT5 tokenizer has no embeddings folder on this host
    (ComfyUI 0.3.64), so the stock encode there reads the words "embedding:<name>" as text; if a later core
    hands it the folder, the stock encode must then give the trained conditioning too."""
    vector, prompts, _ = train(wan, umt5, wan_vae, photo)
    path = wan_token.save_wan_token(str(umt5.embeddings / "alice.safetensors"), vector)
    loaded = sd1_clip.load_embed("alice", [str(umt5.embeddings)], 4096, "umt5xxl")
    assert loaded.shape == (1, 4096) and torch.equal(loaded[0], vector), path
    text = "a photo of embedding:alice man"
    with torch.inference_mode():
        reading = wan_token.clip_reading_embeddings(umt5, [str(umt5.embeddings)])
        (stock,) = nodes.CLIPTextEncode().encode(reading, text)
        trained = prompts.conditioning("a photo of {token} {class_word}", vector)
        start = prompts.conditioning("a photo of {token} {class_word}",
                                     wan_token.wan_class_word_vector(umt5, "man"))
        (users,) = nodes.CLIPTextEncode().encode(umt5, text)
    assert prompts.text("a photo of {token} {class_word}") == "a photo of embedding:pv_identity_token man"
    assert stock[0][0].shape == trained[0][0].shape == (1, 512, 4096)
    assert torch.equal(stock[0][0], trained[0][0])
    assert not torch.equal(start[0][0], trained[0][0])
    user_tokenizer = umt5.tokenizer.clip_umt5xxl
    assert reading.tokenizer.clip_umt5xxl is not user_tokenizer and reading.cond_stage_model is umt5.cond_stage_model
    if user_tokenizer.embedding_directory is None:   # core's umT5 tokenizer drops the folder CLIPLoader gives it
        assert not torch.equal(users[0][0], trained[0][0])
    else:
        assert torch.equal(users[0][0], trained[0][0])


def test_a_clip_that_is_not_umt5_is_refused_clearly(wan, wan_vae, photo):  # noqa: F811
    with torch.inference_mode():
        sd15_clip = tiny_models.tiny_clip()
    for call in (lambda: train(wan, sd15_clip, wan_vae, photo),
                 lambda: wan_token.WanTokenPrompts(sd15_clip, "man"),
                 lambda: wan_token.clip_reading_embeddings(sd15_clip, ["."])):
        with pytest.raises(TrainingError, match=r"not Wan's umT5-XXL text encoder \(it has \['clip_l'\]\)"):
            call()


def test_a_vae_or_model_that_is_not_wan_is_refused_clearly(wan, umt5, wan_vae, photo):  # noqa: F811
    with torch.inference_mode():
        sd_vae, sd_model = tiny_models.tiny_vae(), tiny_models.tiny_sd15_model(seed=0)
    with pytest.raises(TrainingError, match="not the Wan VAE of this MODEL"):
        train(wan, umt5, sd_vae, photo)
    with torch.inference_mode():
        ti2v = wan_models.tiny_wan_model("tiny_ti2v", seed=0)   # Wan 2.2 TI2V 5B's 48-channel latents
    with pytest.raises(TrainingError, match=r"makes 16-channel video latents; the MODEL takes 48-channel"):
        train(ti2v, umt5, wan_vae, photo)
    with pytest.raises(TrainingError, match="needs a core Wan MODEL"):
        train(sd_model, umt5, sd_vae, photo)


def test_a_resumed_run_ends_where_the_uninterrupted_run_ends(wan, umt5, wan_vae, photo):  # noqa: F811
    """Checkpoints after every step; training again from the one after step 2 of 3 gives the uninterrupted
    run's vector and losses bit for bit (the draws made are replayed)."""
    from comfyui_personalvideo.training.run_state import RunState, StageCheckpoints

    run = RunState("wan_token_resume_test", {"wan_token": 1}, every=1)
    run.clear()
    try:
        straight, _, losses = train(wan, umt5, wan_vae, photo, checkpoints=StageCheckpoints(run, "token"))
        stage, done, tensors, extra = run.load()
        assert (stage, done) == ("token", 2)
        resumed, _, again = train(wan, umt5, wan_vae, photo, resume=(done, tensors, extra))
    finally:
        run.clear()
    assert again == losses and len(losses) == 3
    assert torch.equal(straight, resumed)


def test_checkpointing_wan_blocks_and_umt5_layers_gives_the_same_vector(wan, umt5, wan_vae, photo):  # noqa: F811
    """On, both the Wan blocks and umT5's layers run again in backward (umT5 runs with gradient: without
    checkpointing it would keep every layer's activations, and with fp8 weights every cast copy); the vector is
    the one training without checkpointing gives."""
    from comfyui_personalvideo.training.checkpointing import recomputing

    # a layer inside each block: a recomputation calls the block's own forward, its layers through __call__
    layers = {"wan": [b.self_attn for b in wan.model.diffusion_model.blocks],
              "umt5": [b.layer[0] for b in umt5.cond_stage_model.umt5xxl.transformer.encoder.block]}
    rerun = {name: 0 for name in layers}

    def count(name):
        def hook(module, args, output):
            rerun[name] += recomputing()
        return hook

    off, _, losses_off = train(wan, umt5, wan_vae, photo, settings=dict(gradient_checkpointing="off"))
    assert rerun == {"wan": 0, "umt5": 0}
    handles = [m.register_forward_hook(count(name)) for name, ms in layers.items() for m in ms]
    try:
        on, _, losses_on = train(wan, umt5, wan_vae, photo, settings=dict(gradient_checkpointing="on"))
    finally:
        for h in handles:
            h.remove()
    steps = SETTINGS["steps"]
    assert rerun == {"wan": steps * len(layers["wan"]), "umt5": steps * len(layers["umt5"])}
    assert losses_on == pytest.approx(losses_off, rel=1e-5)
    # the same vector up to float rounding (backward through a recomputation sums in another order: on this
    # machine the two differ by 1e-6 of the vector's norm, 5e-6 of the distance training moved it)
    start = wan_token.wan_class_word_vector(umt5, "man")
    moved = float((off - start).norm())
    assert moved > 0.05 * float(start.norm())
    assert float((on - off).norm()) <= 1e-4 * moved, (float((on - off).norm()), moved)


def test_prompts_with_the_token_anywhere_a_word_stands_and_a_clear_error_where_it_cannot(umt5):
    """{token} as a word of its own (first, after a comma, before a comma, twice) gives one vector entry per
    {token}; glued to other characters it is refused with the way to write it."""
    prompts = wan_token.WanTokenPrompts(umt5, "man")
    vector = torch.randn(4096, generator=torch.Generator().manual_seed(3))
    for template in ("{token} {class_word} smiling", "a photo, {token} {class_word}", "{token}, a {class_word}",
                     "{token} {class_word} and {token} again"):
        entries = [t for batch in prompts.tokens(template)["umt5xxl"] for t, *_ in batch if torch.is_tensor(t)]
        assert len(entries) == template.count("{token}"), template
        with torch.inference_mode():
            cond = prompts.conditioning(template, vector)[0][0]
        assert cond.shape == (1, 512, 4096) and bool(torch.isfinite(cond).all())
    for template in ("{token}'s {class_word}", "the{token} {class_word}"):
        with pytest.raises(TrainingError, match="joins {token} to other characters"):
            prompts.tokens(template)


def test_an_fp8_scaled_umt5_trains_and_reads_the_token_the_same_way(wan, wan_vae, photo, tmp_path):  # noqa: F811
    """umT5 as most Wan users load it (Comfy-Org's fp8 scaled file: core's scaled-fp8 layers): training gives the
    vector a gradient through those layers and moves it, and the saved token read by a stock CLIP Text Encode on
    clip_reading_embeddings' clone gives the conditioning training used."""
    from umt5_double.build import scaled_fp8

    umt5_double.install()
    with torch.inference_mode():
        clip = comfy.sd.load_text_encoder_state_dicts([scaled_fp8(tiny_umt5_state_dict(seed=0))],
                                                      clip_type=comfy.sd.CLIPType.WAN)
    layer = clip.cond_stage_model.umt5xxl.transformer.encoder.block[0].layer[0].SelfAttention.q
    assert layer.weight.dtype == torch.float8_e4m3fn and hasattr(layer, "scale_weight")
    start = wan_token.wan_class_word_vector(clip, "man")
    vector, prompts, losses = train(wan, clip, wan_vae, photo)
    assert len(losses) == 3 and all(loss == loss for loss in losses) and not torch.equal(vector, start)
    wan_token.save_wan_token(str(tmp_path / "bob.safetensors"), vector)
    with torch.inference_mode():
        (stock,) = nodes.CLIPTextEncode().encode(wan_token.clip_reading_embeddings(clip, [str(tmp_path)]),
                                                 "a close-up photo of embedding:bob man")
        trained = prompts.conditioning("a close-up photo of {token} {class_word}", vector)
    assert torch.equal(stock[0][0], trained[0][0])
