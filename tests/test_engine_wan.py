"""The engine on Wan (``--backbone wan``): diffusers' WanTransformer3DModel and AutoencoderKLWan with random weights,
against core Wan (tiny, random, tests/wan_models.py) inside the modern ComfyUI host.

- core's weights in diffusers' layout give the same velocity;
- the flow schedule and the late gate are core's / the nodes';
- adapter files go both ways: a node-side file applied here and on core give the same run, and a file the
  engine writes loads through the pack's Load SIA Adapter and applies on core as it did here;
- the engine's adapter training: only the LoRA changes, the seed decides the run, the file is the node's.
Skip on hosts without core Wan (the default 2024 host).
"""
import os

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

import wan_models  # noqa: E402

wan_models.skip_without_wan()

import comfy.samplers  # noqa: E402
from comfyui_personalvideo.engine import flow_schedule, sia_peft, wan_peft, wan_train  # noqa: E402
from comfyui_personalvideo.engine import wan_checkpoint_keys as keys, wan_models as engine_wan  # noqa: E402
from comfyui_personalvideo.engine.errors import EngineError  # noqa: E402
from comfyui_personalvideo.engine.wan_generate import WanGenerateSettings, generate_wan  # noqa: E402
from comfyui_personalvideo.sia import AdapterInfo, apply_sia, load_adapter, save_adapter  # noqa: E402
from comfyui_personalvideo.sia.gate import in_window  # noqa: E402
from comfyui_personalvideo.sia.noise_position import noise_positions  # noqa: E402
from comfyui_personalvideo.training import prompts as prompt_data  # noqa: E402
from comfyui_personalvideo.training.face.identity_loss import IdentityLoss  # noqa: E402
from comfyui_personalvideo.training.face.references import embed_references  # noqa: E402
from comfyui_personalvideo.training.errors import TrainingError  # noqa: E402
from comfyui_personalvideo.training.sia_settings import WanSIATrainSettings  # noqa: E402

import face_fixtures as ff  # noqa: E402
from face_fixtures import tiny_onnx  # noqa: E402,F401
from test_engine_training import faces, photo  # noqa: E402,F401  (the centre-face stack, a 64x64 photo)
from pv_tools.random_wan_models import TEXT_DIM  # noqa: E402

SHIFT = 8.0


def tiny_wan_vae(seed: int = 0):
    """A narrow AutoencoderKLWan (Wan 2.1's layout: 16 latent channels, 8x space, 4x time), random weights."""
    from diffusers import AutoencoderKLWan

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1).eval()


def engine_models(seed: int = 0):
    transformer = engine_wan.transformer_from_core(wan_models.wan_state_dict("tiny", seed))
    return engine_wan.WanEngineModels(transformer, tiny_wan_vae(seed), shift=SHIFT).freeze()


@pytest.fixture(scope="module")
def core():
    with torch.inference_mode():
        return wan_models.with_shift(wan_models.tiny_wan_model(seed=0), SHIFT)


@pytest.fixture(scope="module")
def models():
    return engine_models(0)


def velocity_core(core, x, t, context):
    with torch.no_grad():
        return core.model.diffusion_model(x, t, context).float()


def test_core_weights_in_diffusers_layout_give_the_same_velocity(core, models):
    sd = wan_models.wan_state_dict("tiny", 0)
    mapped = keys.core_to_diffusers({"model.diffusion_model." + k: v for k, v in sd.items()})
    assert set(mapped) == set(models.transformer.state_dict())        # every weight, nothing left over
    assert all(torch.equal(models.transformer.state_dict()[k], v) for k, v in mapped.items())
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 16, 2, 8, 8, generator=g)
    context = torch.randn(1, 7, TEXT_DIM, generator=g)
    for sigma in (1.0, 0.6, 0.1):
        t = flow_schedule.timestep(sigma)
        ours = models.transformer(x, t, encoder_hidden_states=context).sample
        theirs = velocity_core(core, x, t, context)
        assert ours.shape == theirs.shape == x.shape
        assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), float((ours - theirs).abs().max())
    assert float((theirs - x).abs().mean()) > 1e-2      # the comparison is not of two zeros


def test_a_foreign_or_image_conditioned_file_is_a_clear_error():
    sd = wan_models.wan_state_dict("tiny", 0)
    with pytest.raises(EngineError, match="T2V"):
        keys.core_to_diffusers(dict(sd, **{"img_emb.proj.0.weight": torch.zeros(1)}))
    with pytest.raises(EngineError, match="not the weights of a Wan"):
        keys.transformer_config(keys.core_to_diffusers({k: v for k, v in sd.items() if not k.startswith("patch")}))


def test_the_schedule_is_cores_simple_schedule_at_the_shift_and_the_gate_the_nodes(core):
    sampling = core.get_model_object("model_sampling")
    for steps in (3, 4, 10, 30):
        theirs = comfy.samplers.calculate_sigmas(sampling, "simple", steps).float()
        ours = flow_schedule.simple_sigmas(steps, SHIFT)
        assert torch.allclose(ours, theirs, atol=1e-6), (steps, ours, theirs)
        for start in (0.0, 0.5, 0.75, 1.0):
            positions = noise_positions(theirs[:steps], sampling)
            positions[-1] = 1.0       # the nodes' rule: the step that ends the denoising is at 1.0
            expected = [i for i, p in enumerate(positions) if in_window(float(p), start, 1.0)]
            assert flow_schedule.adapted_steps(ours, SHIFT, start) == expected
    late = flow_schedule.adapted_steps(flow_schedule.simple_sigmas(30, SHIFT), SHIFT, 0.75)
    assert 0 < len(late) < 30 and late[-1] == 29 and late == list(range(late[0], 30))


def random_adapter(core, seed=1):
    return wan_models.random_wan_adapter(core, seed=seed, std=0.3)


def core_run(core, adapter, start, steps, cfg, seed, context, uncond):
    """Core's KSampler path (euler, simple) with Apply SIA at Late Steps; the final latent in Wan's normalised
    space (as the engine keeps it)."""
    import comfy.sample

    model = core if adapter is None else apply_sia(core, adapter, 1.0, start, 1.0)[0]
    latent = wan_models.empty_wan_latent(5, 64, 64)["samples"]
    noise = comfy.sample.prepare_noise(latent, seed)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", steps)
    with torch.inference_mode():
        out = comfy.sample.sample_custom(model, noise, cfg, comfy.samplers.sampler_object("euler"), sigmas,
                                         [[context, {}]], [[uncond, {}]], latent, disable_pbar=True, seed=seed)
    return core.model.process_latent_in(out).float()


def engine_run(models, adapter, start, steps, cfg, seed, context, uncond):
    settings = WanGenerateSettings(prompt="", frames=5, width=64, height=64, steps=steps, cfg=cfg, seed=seed,
                                   start_percent=start)
    return generate_wan(models, settings, adapter, context=context, uncond=uncond)


@pytest.mark.parametrize("start", [0.0, 0.75])
def test_a_node_file_applied_here_and_on_core_walks_the_same_latents(core, models, tmp_path, start):
    adapter = random_adapter(core)
    path = save_adapter(adapter, str(tmp_path / "node_side.safetensors"))
    loaded = load_adapter(path)
    context, uncond = wan_models.random_text_cond(1)[0][0], wan_models.random_text_cond(2)[0][0]
    ours = engine_run(models, loaded, start, 4, 1.5, 5, context, uncond)
    theirs = core_run(core, loaded, start, 4, 1.5, 5, context, uncond)
    plain = core_run(core, None, start, 4, 1.5, 5, context, uncond)
    assert torch.allclose(ours["latents"], theirs, atol=2e-4, rtol=1e-3), float((ours["latents"] - theirs).abs().max())
    assert float((theirs - plain).abs().max()) > 1e-2         # the adapter changed the run
    assert ours["adapted_steps"] == flow_schedule.adapted_steps(flow_schedule.simple_sigmas(4, SHIFT), SHIFT, start)
    assert ours["frames"].shape == (5, 3, 64, 64) and 0 <= float(ours["frames"].min()) <= float(ours["frames"].max()) <= 1
    assert not sia_peft.lora_layers(models.transformer)       # the LoRA is taken off again


def test_an_engine_file_loads_through_load_sia_adapter_and_applies_on_core_as_here(core, models, tmp_path,
                                                                                 monkeypatch):
    import folder_paths
    from comfyui_personalvideo.nodes.load_sia_adapter import LoadSIAAdapter

    info = AdapterInfo(name="engine_side", trigger="woman", base="wan")
    start = wan_peft.targets(models.transformer)
    g = torch.Generator().manual_seed(9)
    with torch.random.fork_rng():
        wan_peft.attach(models.transformer, 4, 4.0)
    for layer in sia_peft.lora_layers(models.transformer).values():
        with torch.no_grad():
            layer.lora_A["sia"].weight.copy_(torch.randn(layer.lora_A["sia"].weight.shape, generator=g) * 0.1)
            layer.lora_B["sia"].weight.copy_(torch.randn(layer.lora_B["sia"].weight.shape, generator=g) * 0.3)
    written = wan_peft.extract(models.transformer, 4.0, info)
    sia_peft.detach(models.transformer)
    assert sorted(written.paths) == sorted(t.path for t in start)
    folder = tmp_path / "sia"
    folder.mkdir()
    save_adapter(written, str(folder / "engine_side.safetensors"))
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "sia", ([str(folder)], {".safetensors"}))
    node_adapter, trigger = LoadSIAAdapter().load("engine_side.safetensors")
    assert trigger == "woman" and node_adapter.info.base == "wan"
    context, uncond = wan_models.random_text_cond(3)[0][0], wan_models.random_text_cond(2)[0][0]
    theirs = core_run(core, node_adapter, 0.75, 4, 1.5, 7, context, uncond)
    ours = engine_run(models, written, 0.75, 4, 1.5, 7, context, uncond)["latents"]
    assert torch.allclose(ours, theirs, atol=2e-4, rtol=1e-3), float((ours - theirs).abs().max())


def test_an_sd15_adapter_is_refused_with_a_clear_error(models):
    from comfyui_personalvideo.sia import SIAAdapter

    sd15 = SIAAdapter({"x": torch.zeros(4, 8)}, {"x": torch.zeros(8, 4)}, 4.0, AdapterInfo(name="a"))
    with pytest.raises(EngineError, match="not Wan"):
        generate_wan(models, WanGenerateSettings(prompt="", frames=1, width=64, height=64, steps=2, cfg=1.0),
                     sd15, context=torch.zeros(1, 4, 4096))
    with pytest.raises(TrainingError, match="4k \\+ 1"):
        WanGenerateSettings(prompt="", frames=4).check()


# -- training -------------------------------------------------------------------------------------------------

SMALL = dict(iterations=2, frames=1, width=64, height=64, steps=3, lr=1e-2, seed=11, gradient_checkpointing="off")


def encode(text):
    return wan_models.random_text_cond(10 + sum(map(ord, text)) % 1000)[0][0]


def train_once(faces, photo, seed=11, **kw):  # noqa: F811
    stack, encoder = faces
    models = engine_models(0)
    refs = embed_references(stack.detector, encoder, [photo])
    loss_fn = IdentityLoss(stack.detector, encoder, refs.embeddings)
    with torch.random.fork_rng():
        torch.manual_seed(0)        # the same start for every seed: the training's seed alone differs
        wan_peft.attach(models.transformer, 4, 4.0)
        for layer in sia_peft.lora_layers(models.transformer).values():   # non-zero: the gradient reaches A too
            torch.nn.init.normal_(layer.lora_B["sia"].weight, std=0.05)
    frozen = {k: v.clone() for k, v in models.transformer.state_dict().items() if ".lora_" not in k}
    vae = {k: v.clone() for k, v in models.vae.state_dict().items()}
    before = {n: p.detach().clone() for n, p in models.transformer.named_parameters() if p.requires_grad}
    settings = WanSIATrainSettings(**dict(SMALL, seed=seed, **kw))
    history = wan_train.train_wan_adapter(models, encode, loss_fn,
                                          prompt_data.PromptSampler(["{token} {class_word} smiling"], seed), settings)
    return models, history, frozen, vae, before


def test_the_engine_starts_from_the_nodes_adapter_for_a_seed(core, models):
    from comfyui_personalvideo.training import identity_setup, wan_trainer

    node = wan_trainer.new_wan_adapter(core, rank=4, seed=3)
    ours = identity_setup.initial_adapter(wan_peft.targets(models.transformer), 4, 3, AdapterInfo(base="wan"))
    assert sorted(ours.paths) == sorted(node.paths)
    assert all(torch.equal(ours.down[p], node.down[p]) and torch.equal(ours.up[p], node.up[p]) for p in node.paths)
    other = identity_setup.initial_adapter(wan_peft.targets(models.transformer), 4, 4, AdapterInfo(base="wan"))
    assert any(not torch.equal(other.down[p], node.down[p]) for p in node.paths)


def test_wan_training_changes_only_the_lora_and_the_seed_decides_it(faces, photo):  # noqa: F811
    models, history, frozen, vae, before = train_once(faces, photo)
    assert len(history.loss) == 2 and history.skipped == 0, history.loss
    trainable = [n for n, p in models.transformer.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n and ".attn1.to_" in n for n in trainable)
    state = models.transformer.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())
    assert all(torch.equal(models.vae.state_dict()[k], v) for k, v in vae.items())
    after = dict(models.transformer.named_parameters())
    changed = [n for n in before if not torch.equal(after[n], before[n])]
    assert changed and all(".lora_" in n for n in changed)
    first = wan_peft.extract(models.transformer, 4.0, AdapterInfo(name="a"))
    again = wan_peft.extract(train_once(faces, photo)[0].transformer, 4.0, AdapterInfo(name="a"))
    other = wan_peft.extract(train_once(faces, photo, seed=12)[0].transformer, 4.0, AdapterInfo(name="a"))
    assert all(torch.equal(first.up[p], again.up[p]) and torch.equal(first.down[p], again.down[p])
               for p in first.paths)
    assert any(not torch.equal(first.up[p], other.up[p]) for p in first.paths)


def test_wan_steps_before_the_last_run_in_inference_mode_and_the_last_one_has_the_gradient():
    """The adapter-off steps without gradient run in inference mode; the last one runs with the adapter on and
    gradient, on a normal tensor, and its latents are what the same steps give under no_grad."""
    from comfyui_personalvideo.training import precision as amp

    models = engine_models(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        wan_peft.attach(models.transformer, 4, 4.0)
        for layer in sia_peft.lora_layers(models.transformer).values():
            torch.nn.init.normal_(layer.lora_B["sia"].weight, std=0.05)
    seen = []
    models.transformer.blocks[0].register_forward_hook(
        lambda m, a, o: seen.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled())))
    context, uncond = encode("a man"), encode("")
    noise = torch.randn(models.latent_shape(1, 64, 64), generator=torch.Generator().manual_seed(1))
    pixels, latents = wan_train.run_iteration(models, context, noise, 4, amp.resolve("fp32", torch.device("cpu")),
                                              uncond, 1.5)
    assert seen == [(False, True)] * 3 + [(True, False)]
    assert latents.requires_grad and pixels.requires_grad and not latents.is_inference()
    sigmas = flow_schedule.simple_sigmas(4, models.shift)
    x = noise * float(sigmas[0])
    with torch.no_grad():
        for i in range(4):
            sia_peft.set_enabled(models.transformer, i == 3)
            step = wan_train.guided_denoised(models, x, float(sigmas[i]), context, uncond, 1.5)
            x = flow_schedule.euler_step(x, step, float(sigmas[i]), float(sigmas[i + 1])) if i < 3 else x
    torch.testing.assert_close(latents.detach(), step, rtol=1e-5, atol=1e-6)


def test_train_wan_identity_writes_a_wan_file_the_nodes_load(faces, photo, tmp_path):  # noqa: F811
    models = engine_models(0)
    models.encode = encode               # the umT5 stand-in: a fixed random embedding per prompt
    settings = WanSIATrainSettings(**dict(SMALL, iterations=1))
    result = wan_train.train_wan_identity(models, [photo], "eve", "woman", faces, str(tmp_path), settings)
    path = result["paths"]["sia"]
    assert path == os.path.join(str(tmp_path), "sia", "eve.safetensors")
    loaded = load_adapter(path)
    assert loaded.info.base == "wan" and loaded.info.trigger == "woman" and loaded.embedding is None
    assert sorted(loaded.paths) == sorted(f"blocks.{b}.self_attn.{p}" for b in range(2) for p in "qkv")
    assert loaded.info.training["engine"] == wan_train.ENGINE
    assert not sia_peft.lora_layers(models.transformer)
    with pytest.raises(EngineError, match="exists already"):
        wan_train.train_wan_identity(models, [photo], "eve", "woman", faces, str(tmp_path), settings)


# -- the command line -----------------------------------------------------------------------------------------

def save_tiny_wan_folder(folder) -> str:
    """A diffusers Wan T2V folder at tiny size: the transformer reading a 32-wide umT5 (2 layers, random), the
    narrow VAE, and T5's tokenizer from the ComfyUI host (umT5's own is not in the host; any SentencePiece T5
    tokenizer reads prompts the same way for this test)."""
    from diffusers import WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    import host

    with torch.random.fork_rng():
        torch.manual_seed(0)
        transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=128,
                                            in_channels=16, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=512,
                                            num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                            eps=1e-6)
        text = UMT5EncoderModel(UMT5Config(vocab_size=32128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4))
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(host.host_root(), "comfy", "text_encoders", "t5_tokenizer"),
                                              local_files_only=True)
    transformer.save_pretrained(os.path.join(folder, "transformer"))
    tiny_wan_vae(0).save_pretrained(os.path.join(folder, "vae"))
    text.save_pretrained(os.path.join(folder, "text_encoder"))
    tokenizer.save_pretrained(os.path.join(folder, "tokenizer"))
    return str(folder)


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, tiny_onnx):  # noqa: F811
    root = tmp_path_factory.mktemp("wan-cli")
    ff.centre_face_pack(root / "insightface", recognizer=tiny_onnx)
    return {"root": root, "wan": save_tiny_wan_folder(root / "tiny-wan"), "photo": ff.save_small_photo(root / "photo.png"),
            "faces": str(root / "insightface")}


def test_train_then_generate_on_wan_from_the_command_line(cli_files, capsys):
    from comfyui_personalvideo.engine import cli

    root = cli_files["root"]
    common = ["--backbone", "wan", "--checkpoint", cli_files["wan"], "--models-dir", str(root / "models"),
              "--device", "cpu"]
    rc = cli.main(["train", "--photos", cli_files["photo"], "--name", "wanda", "--class-word", "woman", "--faces",
                   cli_files["faces"], "--sia-iterations", "2", "--frames", "1", "--width", "64", "--height", "64",
                   "--sampling-steps", "3"] + common)
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "on Wan" in out.out and "use it with: woman" in out.out and "adapter" in out.err
    adapter = load_adapter(str(root / "models" / "sia" / "wanda.safetensors"))
    assert adapter.info.base == "wan" and adapter.embedding is None
    assert adapter.info.training["sia"]["steps"] == 3 and adapter.info.training["sia"]["cfg"] == 5.0

    video = root / "wanda.webp"
    rc = cli.main(["generate", "--identity", "wanda", "--prompt", "walking on a beach", "--output", str(video),
                   "--frames", "5", "--width", "64", "--height", "64", "--steps", "4", "--cfg", "1.5"] + common)
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "adapter on step(s) 4 of 4" in out.out
    from PIL import Image

    with Image.open(video) as im:
        assert im.n_frames == 5 and im.size == (64, 64)


@pytest.mark.parametrize("extra, message", [
    (["--checkpoint", "/nonexistent/wan"], "diffusers Wan folder"),
    (["--checkpoint", __file__], "is a file"),
    (["--checkpoint", os.path.dirname(__file__)], "not a diffusers Wan folder (no transformer/"),
    (["--checkpoint", "x", "--motion-model", "m.ckpt"], "--motion-model is for --backbone sd15"),
    (["--checkpoint", "x", "--frames", "16"], "4k + 1"),
])
def test_wrong_wan_input_is_one_clear_line_and_exit_code_1(extra, message, capsys):
    from comfyui_personalvideo.engine import cli

    argv = ["generate", "--backbone", "wan", "--prompt", "x", "--output", "o.webp", "--device", "cpu"] + extra
    assert cli.main(argv) == cli.EXIT_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_two_expert_wan22_folder_is_refused_by_name(cli_files, tmp_path, capsys):
    from comfyui_personalvideo.engine import cli

    folder = tmp_path / "a14b"
    for part in ("transformer", "transformer_2", "vae", "text_encoder", "tokenizer"):
        (folder / part).mkdir(parents=True)
    argv = ["generate", "--backbone", "wan", "--prompt", "x", "--output", "o.webp", "--checkpoint", str(folder)]
    assert cli.main(argv) == cli.EXIT_INPUT and "two-expert Wan 2.2 A14B" in capsys.readouterr().err


def test_the_token_stage_is_refused_on_wan_and_sd15_still_needs_a_motion_model(capsys):
    from comfyui_personalvideo.engine import cli

    argv = ["train", "--backbone", "wan", "--photos", "p.png", "--name", "n", "--class-word", "man", "--checkpoint",
            "x", "--ti-steps", "10"]
    assert cli.main(argv) == cli.EXIT_INPUT and "no token stage on Wan" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--photos", "p.png", "--name", "n", "--class-word", "man", "--checkpoint", "x"])
    assert exc.value.code == cli.EXIT_USAGE and "--motion-model" in capsys.readouterr().err


# -- the identity token of a node-trained Wan identity -----------------------------------------------------------

def test_the_token_enters_umt5_where_the_prompt_names_it(cli_files):
    """A vector given for ``{token}`` / ``embedding:<name>`` reads as umT5 reads a word with that embedding row:
    the table row of a one-piece word in its place gives the plain prompt's states with that word."""
    models = engine_wan.load_wan_folder(cli_files["wan"], shift=SHIFT)
    table = models.text_encoder.get_input_embeddings().weight
    (cat,) = models.tokenizer("cat", add_special_tokens=False).input_ids
    plain = models.encode("a photo of cat man walking")
    for prompt in ("a photo of {token} man walking", "a photo of embedding:wanda man walking",
                   "a photo of embedding:wanda.safetensors man walking"):
        assert torch.allclose(models.encode(prompt, table[cat].detach(), "wanda"), plain, atol=1e-5), prompt
    other = models.encode("a photo of {token} man walking", torch.randn(table.shape[1]), "wanda")
    assert not torch.allclose(other, plain, atol=1e-3)
    assert engine_wan.split_at_token("a photo of embedding:wandab man", "wanda") == ["a photo of embedding:wandab man"]


def test_generate_uses_a_node_token_and_refuses_a_prompt_naming_a_token_it_does_not_have(cli_files, core):
    """A Wan adapter carrying a token (the Wan Train node's token stage) is read where the prompt names it; the
    trigger phrase goes in front of a prompt that does not; a prompt naming a token the adapter lacks is refused."""
    import dataclasses

    from comfyui_personalvideo.engine.wan_job import prompt_with_trigger

    models = engine_wan.load_wan_folder(cli_files["wan"], shift=SHIFT)   # the same shapes as the tiny core model
    width = models.text_encoder.get_input_embeddings().weight.shape[1]
    adapter = random_adapter(core)
    info = dataclasses.replace(adapter.info, name="wanda", trigger="embedding:wanda woman",
                               training={"class_word": "woman"})
    trained = dataclasses.replace(adapter, info=info,
                                  embedding=torch.randn(1, width, generator=torch.Generator().manual_seed(1)) * 5)
    assert prompt_with_trigger("walking on a beach", trained) == "embedding:wanda woman, walking on a beach"
    assert prompt_with_trigger("embedding:wanda woman on a beach", trained) == "embedding:wanda woman on a beach"
    assert prompt_with_trigger("{token} {class_word} walking", trained) == "{token} woman walking"
    untokened = dataclasses.replace(trained, embedding=None)
    assert prompt_with_trigger("{token} {class_word} walking", untokened) == "woman walking"
    settings = dict(frames=1, width=64, height=64, steps=4, cfg=1.0, seed=0)
    with_token = generate_wan(models, WanGenerateSettings(prompt="embedding:wanda woman walking", **settings), trained)
    plain = generate_wan(models, WanGenerateSettings(prompt="woman walking", **settings), trained)
    assert not torch.allclose(with_token["latents"], plain["latents"])
    with pytest.raises(EngineError, match="holds no token"):
        generate_wan(models, WanGenerateSettings(prompt="{token} woman walking", **settings), untokened)
