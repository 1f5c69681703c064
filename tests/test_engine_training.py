"""The engine's two training stages and its files, on tiny diffusers models with random weights."""
import os

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from comfyui_personalvideo.engine import sia_peft, train_adapter as stage2, train_token as stage1  # noqa: E402
from comfyui_personalvideo.training.sia_settings import SIATrainSettings as AdapterSettings  # noqa: E402
from comfyui_personalvideo.engine.errors import EngineError  # noqa: E402
from comfyui_personalvideo.engine.identity_token import TokenPrompts  # noqa: E402
from comfyui_personalvideo.engine.train import train_identity  # noqa: E402
from comfyui_personalvideo.sia import load_adapter  # noqa: E402
from comfyui_personalvideo.engine.noise_table import NoiseTable  # noqa: E402
from comfyui_personalvideo.training import precision as amp, prompts as prompt_data  # noqa: E402
from comfyui_personalvideo.training.identity_setup import token_streams  # noqa: E402
from comfyui_personalvideo.training.face.identity_loss import IdentityLoss  # noqa: E402
from comfyui_personalvideo.training.face.references import embed_references  # noqa: E402
from comfyui_personalvideo.training.textual_inversion import TISettings, draw_batch  # noqa: E402

import engine_models  # noqa: E402
import face_fixtures as ff  # noqa: E402
from face_fixtures import tiny_onnx  # noqa: E402,F401

SMALL = dict(frames=2, width=64, height=64, seed=11)


@pytest.fixture(scope="module")
def faces(tmp_path_factory, tiny_onnx):  # noqa: F811
    """(FaceStack, encoder) over a pack whose detector finds one large face in any textured frame."""
    from comfyui_personalvideo.engine.faces import load_face_stack

    root = tmp_path_factory.mktemp("engine-faces")
    ff.centre_face_pack(root, recognizer=tiny_onnx)
    return load_face_stack(str(root), cache_dir=str(tmp_path_factory.mktemp("engine-enc")))


@pytest.fixture(scope="module")
def photo():
    img = ff.photo_image("astronaut").movedim(-1, 1)
    return torch.nn.functional.interpolate(img, size=(64, 64), mode="area").movedim(1, -1)[0].contiguous()


def run_once(models, prompts, vector, loss_fn, **kw):
    settings = AdapterSettings(**dict(dict(SMALL, iterations=1), **kw))
    return stage2.train_adapter(models, prompts, vector, loss_fn,
                                prompt_data.PromptSampler(["{token} {class_word} smiling"], 0), settings)


def test_identity_loss_falls_on_a_reachable_target_through_the_motion_modules(faces, photo):
    """The same generated sample (seed 11) trained repeatedly: its identity loss must fall."""
    stack, encoder = faces
    models = engine_models.tiny_engine_models()
    prompts = TokenPrompts(models.text_encoder, models.tokenizer, "man")
    vector = prompts.class_word_vector()
    refs = embed_references(stack.detector, encoder, [photo])
    loss_fn = IdentityLoss(stack.detector, encoder, refs.embeddings)
    sia_peft.attach(models.unet, 4, 4.0)
    losses = [run_once(models, prompts, vector, loss_fn, lr=0.05, reg_lambda=0.0).loss[0] for _ in range(6)]
    after = run_once(models, prompts, vector, loss_fn, lr=0.0, weight_decay=0.0).loss[0]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert after < losses[0] - 0.005, (losses, after)


def _frame0_gradient(models, noise, precision=None):
    """Gradient of frame 0's decoded mean on the adapter (last step only, as in training)."""
    params = sia_peft.parameters(models.unet)
    context = TokenPrompts(models.text_encoder, models.tokenizer, "man").encode("a photo of a man")
    pixels, _ = stage2.run_iteration(models, NoiseTable(models.scheduler_config), context, noise, 0, 4,
                                     torch.Generator().manual_seed(0),
                                     precision or amp.resolve("fp32", torch.device("cpu")))
    grads = torch.autograd.grad(pixels.mean(), params)
    return torch.cat([g.reshape(-1) for g in grads])


def _seeded_lora(models):
    with torch.random.fork_rng():
        torch.manual_seed(5)
        sia_peft.attach(models.unet, 4, 4.0)
        with torch.no_grad():
            for p in sia_peft.parameters(models.unet):
                p.normal_(std=0.1)  # up weights non-zero: the gradient on down weights is non-zero too


def test_gradient_reaches_the_adapter_through_the_motion_modules():
    """Frame 0's loss depends on frame 1's noise only through the motion modules (temporal attention): with
    them in, changing frame 1 changes the adapter's gradient; with the image UNet alone, it does not."""
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))     # [frames, C, h, w]
    other = noise.clone()
    other[1] = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(2))
    video = engine_models.tiny_engine_models(motion=True)
    _seeded_lora(video)
    g1, g2 = _frame0_gradient(video, noise), _frame0_gradient(video, other)
    assert g1.abs().max() > 0
    assert (g1 - g2).abs().max() > 1e-3 * g1.abs().max()

    image = engine_models.tiny_engine_models(motion=False)
    _seeded_lora(image)
    h1, h2 = _frame0_gradient(image, noise), _frame0_gradient(image, other)
    torch.testing.assert_close(h1, h2, rtol=1e-4, atol=1e-7 * float(h1.abs().max()))


def test_the_motion_unet_is_built_on_the_image_unets_device_whatever_torchs_default():
    """diffusers builds the motion UNet on torch's default device and copies the image UNet's weights into it: on
    a GPU the engine's stage 2 then ran on the CPU (and failed at the decoder, on the GPU). Here torch's default
    device is the meta device and the models are on the CPU, the same situation one device along."""
    from comfyui_personalvideo.engine import models as engine_models_module

    image = engine_models.tiny_engine_models(motion=False)
    weights = {k: v.clone() for k, v in image.unet.state_dict().items()}
    motion = engine_models.tiny_motion_adapter()
    with torch.device("meta"):
        engine_models_module.add_motion(image, motion)
    assert image.has_motion
    assert {p.device for p in image.unet.parameters()} == {torch.device("cpu")}
    state = image.unet.state_dict()
    assert torch.equal(state["conv_in.weight"], weights["conv_in.weight"])
    assert torch.equal(state["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"],
                       weights["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_motion_unet_is_on_the_gpu_when_the_image_unet_is():
    models = engine_models.tiny_engine_models(motion=False)
    models.to(torch.device("cuda"))
    from comfyui_personalvideo.engine import models as engine_models_module

    engine_models_module.add_motion(models, engine_models.tiny_motion_adapter().to("cuda"))
    assert {p.device.type for p in models.unet.parameters()} == {"cuda"}


def test_the_training_dtypes_are_the_nodes_on_cuda_with_auto_and_fp32_otherwise():
    from comfyui_personalvideo.engine import training_dtypes
    from comfyui_personalvideo.training.errors import TrainingError

    assert training_dtypes.unet_dtype("auto", "cuda") == torch.float16
    assert training_dtypes.vae_dtype("auto", "cuda", bf16_supported=True) == torch.bfloat16
    assert training_dtypes.vae_dtype("auto", "cuda", bf16_supported=False) == torch.float32
    for choice in ("fp32", "bf16", "fp16"):   # an explicit choice: fp32 weights (autocast for bf16 / fp16)
        assert training_dtypes.unet_dtype(choice, "cuda") == training_dtypes.vae_dtype(choice, "cuda") == torch.float32
    assert training_dtypes.unet_dtype("auto", "cpu") == training_dtypes.vae_dtype("auto", "cpu") == torch.float32
    with pytest.raises(TrainingError, match="precision must be one of"):
        training_dtypes.unet_dtype("half", "cuda")
    models, motion = engine_models.tiny_engine_models(motion=False), engine_models.tiny_motion_adapter()
    models.unet.to(torch.bfloat16)
    training_dtypes.place(models, motion, "cpu", "auto")
    assert {p.dtype for m in (models.unet, models.vae, models.text_encoder, motion) for p in m.parameters()} == \
        {torch.float32}


def _in_bfloat16(models, lora_like):
    """``models`` with the UNet (motion modules included) and the VAE in bf16, the LoRA fp32 with the values of
    ``lora_like``'s (the stand-in, on the CPU, for the fp16 UNet and bf16 VAE the engine trains on CUDA)."""
    models.unet.to(torch.bfloat16)
    models.vae.to(torch.bfloat16)
    for p, q in zip(sia_peft.parameters(models.unet), sia_peft.parameters(lora_like.unet)):
        p.data = q.detach().clone()
    return models


def test_auto_precision_trains_a_half_precision_engine_model_in_its_own_dtype(faces, photo, monkeypatch):
    """With auto the engine trains a half-precision UNet in its own dtype, without autocast, as the node trains
    ComfyUI's: the LoRA and the token stay fp32, and the adapter's gradient is the fp32 run's up to rounding."""
    from comfyui_personalvideo.engine.training_dtypes import compute_dtype

    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    reference = engine_models.tiny_engine_models()
    _seeded_lora(reference)
    half = engine_models.tiny_engine_models()
    _seeded_lora(half)
    _in_bfloat16(half, reference)
    chosen = amp.resolve("auto", torch.device("cpu"), compute_dtype(half.unet))
    assert (chosen.name, chosen.native) == ("bf16", True)
    seen = []
    layer = next(iter(sia_peft.lora_layers(half.unet).values()))
    layer.base_layer.register_forward_hook(lambda m, a, o: seen.append((a[0].dtype, torch.is_autocast_enabled())))
    g_half, g_full = _frame0_gradient(half, noise, chosen), _frame0_gradient(reference, noise)
    assert set(seen) == {(torch.bfloat16, False)}
    assert g_half.dtype == torch.float32 and torch.isfinite(g_half).all()
    cosine = float(torch.nn.functional.cosine_similarity(g_half, g_full, dim=0))
    assert cosine > 0.99 and 0.95 < float(g_half.norm() / g_full.norm()) < 1.05, cosine   # here 0.9996, 0.996

    stack, encoder = faces   # both stages through their entry points, precision auto
    prompts = TokenPrompts(half.text_encoder, half.tokenizer, "man")
    loss_fn = IdentityLoss(stack.detector, encoder, embed_references(stack.detector, encoder, [photo]).embeddings)
    history = run_once(half, prompts, prompts.class_word_vector(), loss_fn, iterations=2, precision="auto")
    assert history.precision == "bf16" and all(torch.isfinite(torch.tensor(history.loss)))
    assert all(p.dtype == torch.float32 for p in sia_peft.parameters(half.unet))
    image = engine_models.tiny_engine_models(motion=False)
    image.unet.to(torch.bfloat16)
    image.vae.to(torch.bfloat16)
    seen.clear()
    image.unet.conv_in.register_forward_hook(lambda m, a, o: seen.append((a[0].dtype, torch.is_autocast_enabled())))
    token_prompts = TokenPrompts(image.text_encoder, image.tokenizer, "man")
    chosen_for_token = []
    resolve = amp.resolve
    monkeypatch.setattr(stage1.amp, "resolve", lambda *a: chosen_for_token.append(resolve(*a)) or chosen_for_token[-1])
    vector, losses = stage1.train_token(image.unet, image.vae, token_prompts, photo[None],
                                        NoiseTable(image.scheduler_config), TISettings(steps=2, batch_size=1))
    assert [(c.name, c.native) for c in chosen_for_token] == [("bf16", True)]
    assert set(seen) == {(torch.bfloat16, False)}
    assert vector.dtype == torch.float32 and torch.isfinite(vector).all() and len(losses) == 2


@pytest.mark.parametrize("motion", [True, False])
def test_training_guidance_is_classifier_free_guidance_of_the_two_predictions(motion):
    """The training samples' cfg (one batched UNet call) equals uncond + cfg * (cond - uncond) of the denoised
    predictions of two calls, in the frames-first layout whatever the UNet takes."""
    models = engine_models.tiny_engine_models(motion=motion)
    table = NoiseTable(models.scheduler_config)
    g = torch.Generator().manual_seed(3)
    x = torch.randn((2, 4, 8, 8), generator=g) * 3.0                   # noisy frames [F, C, h, w]
    cond, uncond = torch.randn(1, 77, 32, generator=g), torch.randn(1, 77, 32, generator=g)
    sigma = table.sigma(torch.tensor(500.0))
    video = x.permute(1, 0, 2, 3)[None] if motion else x
    t = table.timestep(sigma).float()

    def denoised(context):
        eps = models.predict_noise(video / (sigma ** 2 + 1) ** 0.5, t, context)
        return x - (eps[0].permute(1, 0, 2, 3) if motion else eps) * sigma

    with torch.no_grad():
        guided = stage2.guided_denoised(models, table, x, sigma, cond, uncond, 1.5)
        c, u = denoised(cond), denoised(uncond)
        plain = stage2.guided_denoised(models, table, x, sigma, cond, uncond, 1.0)
    torch.testing.assert_close(guided, u + 1.5 * (c - u), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(plain, c, rtol=0, atol=1e-6)
    assert not torch.allclose(guided, c, atol=1e-4)


def test_only_the_lora_trains_and_only_the_last_step_has_it():
    models = engine_models.tiny_engine_models()
    _seeded_lora(models)
    layer = next(iter(sia_peft.lora_layers(models.unet).values()))
    seen = []
    layer.register_forward_hook(lambda m, a, o: seen.append((not m.disable_adapters, torch.is_grad_enabled(),
                                                             torch.is_inference_mode_enabled())))
    before = {n: p.detach().clone() for n, p in models.unet.named_parameters() if ".lora_" not in n}
    context = TokenPrompts(models.text_encoder, models.tokenizer, "man").encode("a man")
    stage2.run_iteration(models, NoiseTable(models.scheduler_config), context, torch.randn(2, 4, 8, 8), 0, 4,
                         torch.Generator().manual_seed(0), amp.resolve("fp32", torch.device("cpu")))
    assert seen == [(False, False, True)] * 3 + [(True, True, False)]   # the steps before in inference mode
    after = dict(models.unet.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert all(".lora_" in n for n, p in models.unet.named_parameters() if p.requires_grad)


def test_the_steps_without_gradient_give_the_last_step_what_a_no_grad_loop_gives():
    """The first steps run in inference mode: the latents they hand the gradient step, the noise drawn between
    them and the result are those of the same steps under no_grad, and the result still carries the gradient."""
    models = engine_models.tiny_engine_models()
    _seeded_lora(models)
    table = NoiseTable(models.scheduler_config)
    with torch.no_grad():
        context = TokenPrompts(models.text_encoder, models.tokenizer, "man").encode("a man")
        uncond = TokenPrompts(models.text_encoder, models.tokenizer, "man").encode("")
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    drawn = torch.Generator().manual_seed(2)
    pixels, denoised = stage2.run_iteration(models, table, context, noise, 1, 4, drawn,
                                            amp.resolve("fp32", torch.device("cpu")), uncond, 1.5)
    assert denoised.requires_grad and pixels.requires_grad and not denoised.is_inference()

    generator, sigmas = torch.Generator().manual_seed(2), table.sgm_uniform(4)
    x = noise * torch.sqrt(1.0 + sigmas[0] ** 2.0)
    with torch.no_grad():
        for i in range(4):
            sia_peft.set_enabled(models.unet, i == 3)
            step = stage2.guided_denoised(models, table, x, sigmas[i], context, uncond, 1.5)
            if i < 3:
                x = step + sigmas[i + 1] * torch.randn(step.shape, generator=generator, dtype=torch.float32)
    torch.testing.assert_close(denoised.detach(), step, rtol=1e-5, atol=1e-6)
    assert torch.equal(drawn.get_state(), generator.get_state())   # the same noise drawn between the steps


def test_token_training_lowers_its_objective_more_than_random_moves(photo):
    """Stage 1 on a problem the token can act on (cross-attention output made strong, x10): the noise loss on
    training's own draws, recomputed per vector, falls by more than any random move of the same length."""
    models = engine_models.tiny_engine_models(motion=False)
    with torch.no_grad():
        for name, module in models.unet.named_modules():
            if name.endswith("attn2.to_out.0"):
                module.weight.mul_(10.0)
    prompts = TokenPrompts(models.text_encoder, models.tokenizer, "man")
    table = NoiseTable(models.scheduler_config)
    settings = TISettings(steps=24, lr=5e-3, batch_size=4, seed=0, precision="fp32")
    latents = stage1.encode_photos(models.vae, photo[None])
    fp32 = amp.resolve("fp32", torch.device("cpu"))

    def objective(v):   # the mean loss over training's own draws (its streams, same seed, same order)
        rng, gen = token_streams(settings.seed)
        with torch.no_grad():
            return sum(float(stage1.noise_loss(models.unet, prompts, latents, v,
                                               draw_batch(rng, gen, latents, settings.batch_size), table, fp32))
                       for _ in range(settings.steps)) / settings.steps

    start = prompts.class_word_vector()
    before = objective(start)
    vector, losses = stage1.train_token(models.unet, models.vae, prompts, photo[None], table, settings)
    distance = float((vector - start).norm())
    drops = []
    for k in range(6):
        direction = torch.randn(start.shape, generator=torch.Generator().manual_seed(k))
        drops.append(before - objective(start + direction / direction.norm() * distance))
    drop = before - objective(vector)
    assert len(losses) == settings.steps and distance > 0
    assert drop > max(drops) and drop > 2.0 * sum(abs(d) for d in drops) / len(drops), (drop, drops)


def test_train_identity_writes_the_nodes_files(faces, photo, tmp_path):
    models = engine_models.tiny_engine_models(motion=False)
    motion = engine_models.tiny_motion_adapter()
    seen = []
    result = train_identity(models, [photo], "Ada Lovelace", "woman", faces, str(tmp_path), motion_adapter=motion,
                            ti_settings=TISettings(steps=2, batch_size=1), sia_settings=AdapterSettings(
                                iterations=2, **SMALL), progress=lambda *a: seen.append(a[:3]))
    paths = result["paths"]
    assert paths == {"sia": str(tmp_path / "sia" / "Ada_Lovelace.safetensors"),
                     "embedding": str(tmp_path / "embeddings" / "Ada_Lovelace.safetensors")}
    adapter = load_adapter(paths["sia"])
    assert adapter.info.trigger == "embedding:Ada_Lovelace woman" and adapter.info.num_res_blocks == 2
    training = adapter.info.training
    assert training["class_word"] == "woman" and training["sia"]["iterations"] == 2
    assert training["engine"] == "diffusers+peft" and training["motion_modules"] is True
    assert adapter.rank == 4 and adapter.alpha == 4.0 and len(adapter.paths) == 33
    assert torch.equal(adapter.embedding.reshape(-1), result["vector"].reshape(-1))
    from safetensors.torch import load_file

    assert torch.equal(load_file(paths["embedding"])["emb_params"].reshape(-1), result["vector"].reshape(-1))
    assert seen[0] == ("token", 0, 2) and seen[-1] == ("adapter", 1, 2)
    assert not [f for d in ("sia", "embeddings") for f in os.listdir(tmp_path / d) if f.startswith(".")]
    with pytest.raises(EngineError, match="exists already"):
        train_identity(models, [photo], "Ada Lovelace", "woman", faces, str(tmp_path))


def test_the_record_keeps_the_fingerprint_of_the_weights_as_loaded(faces, photo, tmp_path):
    """On CUDA the command casts the weights to their training dtypes after reading them (fp16 rounds an fp32
    file's values); train-many decides a reuse from the weights as read, so the record holds that fingerprint.
    The whole identity trains here from bf16 models, precision auto."""
    from comfyui_personalvideo.engine.model_fingerprint import fingerprint

    models, motion = engine_models.tiny_engine_models(motion=False), engine_models.tiny_motion_adapter()
    loaded = fingerprint(models, motion)
    for module in (models.unet, models.vae, motion):
        module.to(torch.bfloat16)
    assert fingerprint(models, motion)["weights"] != loaded["weights"]
    result = train_identity(models, [photo], "cast", "man", faces, str(tmp_path), motion_adapter=motion,
                            ti_settings=TISettings(steps=1, batch_size=1),
                            sia_settings=AdapterSettings(iterations=1, **SMALL), base_model=loaded)
    training = load_adapter(result["paths"]["sia"]).info.training
    assert training["record"]["base_model"] == loaded and training["sia"]["precision"] == "auto"
    assert result["history"].precision == "bf16" and result["vector"].dtype == torch.float32


def test_a_photo_without_a_face_is_a_clear_error(faces, tmp_path):
    from comfyui_personalvideo.training.face.errors import FaceStackError

    models = engine_models.tiny_engine_models(motion=False)
    blank = torch.full((64, 64, 3), 0.5)
    with pytest.raises(FaceStackError, match="has a usable face"):
        train_identity(models, [blank], "nobody", "man", faces, str(tmp_path))
    assert not os.path.exists(tmp_path / "sia")
