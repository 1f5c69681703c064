"""The engine and the nodes share files and numbers: the same UNet weights give the same denoising step with the
same adapter, whichever side wrote the adapter file (our nodes, the stock LoraLoader, the engine)."""
import os

import pytest
import torch

import folder_paths
import nodes
from comfyui_personalvideo.nodes.apply_sia import ApplySIALateSteps
from comfyui_personalvideo.nodes.load_sia_adapter import LoadSIAAdapter
from comfyui_personalvideo.sia import AdapterInfo, load_adapter, naming, save_adapter

import sampling
import tiny_models
from face_fixtures import tiny_onnx  # noqa: F401

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from comfyui_personalvideo.engine import checkpoint_keys, models, sia_peft  # noqa: E402

SIZE = 64


def engine_unet(comfy_model):
    """The engine's UNet2DConditionModel from the ComfyUI UNet's ldm state dict (the checkpoint's UNet keys)."""
    sd = {k: v.detach().clone() for k, v in comfy_model.model.diffusion_model.state_dict().items()}
    unet, res_blocks = models.unet_from_ldm(sd)
    assert res_blocks == 2
    return unet.eval()


def comfy_step(model, cond):
    """One LCM step from pure noise at the top of the schedule (sigma_max): the denoised latent (in the UNet's
    scale: ComfyUI hands latents out divided by the VAE's scaling factor)."""
    out, _ = sampling.sample(model, cond, cond, steps=1, seed=4, size=SIZE)
    return model.model.process_latent_in(out)


def engine_step(unet, context):
    """The same step in the engine: x_t = noise (unit variance, as ComfyUI scales the first step's noise),
    x0 = (x_t - sqrt(1 - abar_999) eps) / sqrt(abar_999)."""
    import comfy.sample
    from diffusers import DDPMScheduler

    from comfyui_personalvideo.engine.shipped_configs import shipped_config

    scheduler = DDPMScheduler.from_config(shipped_config("sd15_scheduler"))
    abar = scheduler.alphas_cumprod[999].double()
    noise = comfy.sample.prepare_noise(torch.zeros(1, 4, SIZE // 8, SIZE // 8), 4).double()
    x_t = noise
    with torch.no_grad():
        eps = unet(x_t.float(), torch.tensor([999]), encoder_hidden_states=context).sample.double()
    return ((x_t - (1 - abar).sqrt() * eps) / abar.sqrt()).float()


@pytest.fixture(scope="module")
def base():
    with torch.inference_mode():
        model = tiny_models.tiny_sd15_model(seed=0)
        cond = tiny_models.random_cond(model, 1)
    return model, cond


def close(a, b):
    scale = float(b.abs().max())
    torch.testing.assert_close(a, b, rtol=0, atol=2e-4 * scale + 1e-5)


def test_the_engine_unet_is_comfyui_unet_on_the_same_weights(base):
    model, cond = base
    unet = engine_unet(model)
    with torch.inference_mode():
        want = comfy_step(model, cond)
    got = engine_step(unet, cond[0][0].clone())
    close(got, want)
    assert float(want.abs().mean()) > 0.01  # the network does something


def _engine_adapter_file(unet, path, seed=3):
    """An adapter as the engine makes one: peft LoRA on the UNet, random up weights, written to our format."""
    sia_peft.attach(unet, rank=4, alpha=2.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in sia_peft.lora_layers(unet).values():
            b = layer.lora_B[sia_peft.ADAPTER_NAME].weight
            b.copy_(torch.randn(b.shape, generator=g))
    adapter = sia_peft.extract(unet, 2.0, AdapterInfo(name="engine_id", trigger="embedding:engine_id woman"),
                               embedding=torch.randn(1, 32, generator=g))
    return save_adapter(adapter, path)


def test_engine_file_loads_in_our_nodes_and_the_stock_lora_loader_with_the_same_step(base):
    model, cond = base
    unet = engine_unet(model)
    sia_dir = folder_paths.get_folder_paths("sia")[0]
    path = _engine_adapter_file(unet, os.path.join(sia_dir, "engine_id.safetensors"))
    targets = sia_peft.target_names(unet)
    assert len(targets) == len(load_paths(model)) == 33 and all(".attn1.to_" in n and "motion" not in n for n in targets)
    got = engine_step(unet, cond[0][0].clone())            # the engine, adapter on

    with torch.inference_mode():
        adapter, trigger = LoadSIAAdapter().load("engine_id.safetensors")
        assert trigger == "embedding:engine_id woman" and adapter.embedding is not None
        (ours,) = ApplySIALateSteps().apply(model, adapter, 1.0, 0.0, 1.0)
        by_node = comfy_step(ours, cond)
        loras = folder_paths.get_folder_paths("loras")[0]
        os.makedirs(loras, exist_ok=True)
        link = os.path.join(loras, "engine_id.safetensors")
        if not os.path.exists(link):
            os.symlink(path, link)
        (stock,) = nodes.LoraLoaderModelOnly().load_lora_model_only(model, "engine_id.safetensors", 1.0)
        by_lora = comfy_step(stock, cond)
        plain = comfy_step(model, cond)
    close(by_node, got)
    close(by_lora, got)
    assert float((got - plain).abs().max()) > 20 * 2e-4 * float(plain.abs().max())  # the adapter matters


def test_a_file_written_by_the_pack_loads_in_the_engine_with_the_same_step(base, make_adapter, tmp_path):
    model, cond = base
    adapter = make_adapter(model, rank=4, alpha=4.0)
    path = save_adapter(adapter, str(tmp_path / "pack_id.safetensors"))
    unet = engine_unet(model)
    loaded = load_adapter(path)
    sia_peft.attach(unet, loaded.rank, loaded.alpha, adapter=loaded)
    got = engine_step(unet, cond[0][0].clone())
    with torch.inference_mode():
        (patched,) = ApplySIALateSteps().apply(model, adapter, 1.0, 0.0, 1.0)
        want = comfy_step(patched, cond)
    close(got, want)
    # and back: the engine writes exactly the weights it read
    again = sia_peft.extract(unet, loaded.alpha, loaded.info)
    for p in adapter.paths:
        assert torch.equal(again.down[p], loaded.down[p]) and torch.equal(again.up[p], loaded.up[p])


def test_the_lora_sits_on_spatial_self_attention_only_with_motion_modules(base):
    from diffusers import MotionAdapter

    model, _ = base
    engine = models.EngineModels(engine_unet(model), torch.nn.Identity(), torch.nn.Identity(), None)
    motion = MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=2, motion_norm_num_groups=32,
                           motion_num_attention_heads=2, motion_max_seq_length=16)
    models.add_motion(engine, motion)
    assert engine.has_motion
    motion_attn = [n for n, _ in engine.unet.named_modules() if "motion_modules" in n and n.endswith("attn1.to_q")]
    assert motion_attn
    names = sia_peft.attach(engine.unet, 4, 4.0)
    adapted = set(sia_peft.lora_layers(engine.unet))
    assert adapted == set(names)
    assert adapted == {naming.to_diffusers(p) for p in load_paths(model)}
    assert not any("motion_modules" in n or "attn2" in n for n in adapted)
    trainable = {n for n, p in engine.unet.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)


def load_paths(model):
    from comfyui_personalvideo.sia import discover_targets

    return discover_targets(model.model.diffusion_model).paths


def test_ldm_checkpoint_keys_map_onto_diffusers_exactly(base):
    """Every key of the ComfyUI UNet lands on a diffusers parameter, and diffusers has none left over."""
    from diffusers import UNet2DConditionModel

    from comfyui_personalvideo.engine.shipped_configs import shipped_config

    model, _ = base
    sd = model.model.diffusion_model.state_dict()
    layout = checkpoint_keys.unet_layout(sd)
    assert layout["widths"] == [32, 64] and layout["attention"] == [True, True] and layout["context_dim"] == 32
    mapped = checkpoint_keys.unet_to_diffusers(sd, layout)
    unet = UNet2DConditionModel.from_config(checkpoint_keys.unet_config(layout, shipped_config("sd15_unet")))
    assert set(mapped) == set(unet.state_dict())
    for k, v in mapped.items():
        assert tuple(unet.state_dict()[k].shape) == tuple(v.shape), k


AGREE = dict(ti_steps=3, ti_learning_rate=1e-2, ti_batch_size=2, sia_iterations=2, sia_learning_rate=1e-2, sia_rank=4,
             reg_lambda=1e-2, frames=2, width=64, height=64, sampling_steps=4, seed=5)
AGREE_PROMPTS = "{token} {class_word} walking on a beach\n{token} {class_word} reading a book"


def _engine_identity(models, photo, stack, models_dir, name):
    from comfyui_personalvideo.engine.train import train_identity as engine_train
    from comfyui_personalvideo.training.sia_settings import SIATrainSettings
    from comfyui_personalvideo.training.textual_inversion import TISettings

    s = AGREE
    return engine_train(models, [photo[0]], name, "man", stack, str(models_dir),
                        ti_settings=TISettings(steps=s["ti_steps"], lr=s["ti_learning_rate"],
                                               batch_size=s["ti_batch_size"], seed=s["seed"]),
                        sia_settings=SIATrainSettings(iterations=s["sia_iterations"], lr=s["sia_learning_rate"],
                                                      reg_lambda=s["reg_lambda"], steps=s["sampling_steps"],
                                                      frames=s["frames"], width=s["width"], height=s["height"],
                                                      seed=s["seed"], cfg=1.5),
                        rank=s["sia_rank"], prompts=AGREE_PROMPTS)


def test_the_engine_and_the_node_train_the_same_identity_for_a_seed(tiny_onnx, tmp_path_factory):  # noqa: F811
    """The same photo, settings and seed on the same weights (no motion model: the default host has none to
    share): the engine and the Train node make the same draws (reference augmentation, the token stage's
    photos, flips, templates, timesteps and noise, the adapter's start, stage 2's prompts, frames and noise) on
    the same noise levels, so they end with the same token, losses, face similarities and adapter, and write
    the same record. The node reuses the identity the engine trained as its own."""
    import shutil

    import engine_models
    import face_fixtures as ff
    from comfyui_personalvideo.engine.faces import load_face_stack
    from comfyui_personalvideo.training.identity_training import train_identity as node_train

    root = tmp_path_factory.mktemp("agree-faces")
    analysis = ff.centre_face_analysis(root, recognizer=tiny_onnx, encoder_cache=tmp_path_factory.mktemp("agree-enc"))
    stack = load_face_stack(str(root), cache_dir=str(tmp_path_factory.mktemp("agree-enc-engine")))
    image = ff.photo_image("astronaut").movedim(-1, 1)
    photo = torch.nn.functional.interpolate(image, size=(64, 64), mode="area").movedim(1, -1).contiguous()
    with torch.inference_mode():
        model, clip, vae = tiny_models.tiny_sd15_model(seed=0), tiny_models.tiny_clip(), tiny_models.tiny_vae()
    engine = _engine_identity(engine_models.engine_models_like(model, clip, vae), photo, stack,
                              tmp_path_factory.mktemp("agree-models"), "agreed")
    with torch.inference_mode():
        node = node_train(model, clip, vae, photo, analysis, "agreed_by_node", "man", AGREE_PROMPTS, **AGREE)

    torch.testing.assert_close(torch.tensor(engine["token_losses"]), torch.tensor(node["token_losses"]),
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(engine["vector"], node["vector"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor(engine["history"].similarity), torch.tensor(node["history"].similarity),
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor(engine["history"].loss), torch.tensor(node["history"].loss),
                               rtol=1e-4, atol=1e-5)
    for path in node["adapter"].paths:
        for side in ("down", "up"):
            want, got = getattr(node["adapter"], side)[path], getattr(engine["adapter"], side)[path]
            torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-2 * AGREE["sia_learning_rate"])
    assert min(float(node["adapter"].up[p].abs().max()) for p in node["adapter"].paths) > 1e-4  # every layer trained
    ours, theirs = node["adapter"].info.training, engine["adapter"].info.training
    assert ours["record"] == theirs["record"]
    for key in ("skipped_frames", "precision", "identity_score", "references", "prompts", "rank"):
        assert theirs[key] == ours[key], key
    assert len(theirs["history"]["similarity"]) == len(ours["history"]["similarity"]) == AGREE["sia_iterations"]

    # the engine's files where the node looks: reused, not refused as written by an older version
    for kind, folder in (("sia", "sia"), ("embedding", "embeddings")):
        shutil.copy(engine["paths"][kind], os.path.join(folder_paths.get_folder_paths(folder)[0], "agreed.safetensors"))
    with torch.inference_mode():
        again = node_train(model, clip, vae, photo, analysis, "agreed", "man", AGREE_PROMPTS, **AGREE)
    assert again["reused"] and again["trigger"] == "embedding:agreed man"
    for path in engine["adapter"].paths:
        assert torch.equal(again["adapter"].up[path], engine["adapter"].up[path])
