"""The doctor's Wan line: Wan diffusion models named by variant from their tensor shapes, umT5, the Wan VAEs.

Files are safetensors headers with the real shapes of the published models over
sparse data (nothing is read but the header), plus a tiny random Wan model that
core itself detects; runs on both hosts (the doctor reads files, not the host's
Wan code).
"""
import json
import os

import pytest

from comfyui_personalvideo import doctor
from comfyui_personalvideo.doctor import wan_models

from test_doctor_checks import context, model_folders  # noqa: F401

KINDS = {"diffusion_models": {".safetensors"}, "unet": {".safetensors"}, "text_encoders": {".safetensors"},
         "clip": {".safetensors"}, "vae": {".safetensors"}}


@pytest.fixture
def install(tmp_path, monkeypatch):
    return model_folders(tmp_path, monkeypatch, KINDS)


def header_file(path, shapes: dict, dtype="F16"):
    """A valid .safetensors of zeros with these tensor shapes, written sparse (a 14B model's header costs
    kilobytes on disk)."""
    header, offset = {}, 0
    for key, shape in shapes.items():
        n = 2
        for d in shape:
            n *= d
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        f.truncate(8 + len(raw) + offset)
    return path


def wan_shapes(dim, layers, in_dim, out_dim=None, image=False, prefix=""):
    out_dim = out_dim or in_dim
    shapes = {prefix + "head.modulation": (1, 2, dim), prefix + "patch_embedding.weight": (dim, in_dim, 1, 2, 2),
              prefix + "head.head.weight": (out_dim * 4, dim)}
    for i in range(layers):
        for p in "qkvo":
            shapes[f"{prefix}blocks.{i}.self_attn.{p}.weight"] = (dim, dim)
    if image:
        shapes[prefix + "img_emb.proj.0.bias"] = (1280,)
    return shapes


@pytest.mark.parametrize("name,dim,layers,in_dim,image,want", [
    ("wan2.1_t2v_1.3B_fp16.safetensors", 1536, 30, 16, False, "Wan 2.1 T2V 1.3B"),
    ("wan2.1_t2v_14B_fp8_e4m3fn.safetensors", 5120, 40, 16, False, "Wan 2.1 T2V 14B or a Wan 2.2 T2V A14B expert"),
    ("wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", 5120, 40, 16, False, "Wan 2.2 T2V A14B, high-noise expert"),
    ("wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", 5120, 40, 16, False, "Wan 2.2 T2V A14B, low-noise expert"),
    ("wan2.2_ti2v_5B_fp16.safetensors", 3072, 30, 48, False, "Wan 2.2 TI2V 5B"),
    ("wan2.1_i2v_480p_14B_fp16.safetensors", 5120, 40, 36, True, "Wan 2.1 I2V 14B"),
    ("odd.safetensors", 256, 2, 16, False, "a Wan model of width 256, 2 blocks"),
])
def test_variants_from_shapes(install, name, dim, layers, in_dim, image, want):
    from comfyui_personalvideo.doctor.model_files import safetensors_header

    path = header_file(install / "diffusion_models" / name, wan_shapes(dim, layers, in_dim, image=image))
    assert wan_models.wan_diffusion_variant(safetensors_header(str(path)), name).startswith(want)


def test_a_tiny_wan_model_core_detects_is_recognised_too(install):
    import wan_models as tiny

    if not tiny.has_wan():
        pytest.skip(tiny.NO_WAN)
    tiny.save_wan_model(str(install / "diffusion_models" / "tiny_wan.safetensors"))
    result = wan_models.check_wan_models(context())
    assert "tiny_wan.safetensors: a Wan model of width 256, 2 blocks, 16 input channels" in result.message


def test_no_wan_files_is_ok(install):
    result = wan_models.check_wan_models(context())
    assert result.status == doctor.OK and "no Wan files found" in result.message


def test_a_complete_wan22_install_is_ok_and_gaps_are_warnings(install):
    header_file(install / "diffusion_models" / "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
                wan_shapes(5120, 40, 16, prefix="model.diffusion_model."))
    partial = wan_models.check_wan_models(context())
    assert partial.status == doctor.WARN
    for words in ("no umT5-XXL text encoder", "no Wan 2.1 VAE", "only the low-noise Wan 2.2 A14B expert"):
        assert words in partial.message
    assert "Comfy-Org/Wan_2.2_ComfyUI_Repackaged" in partial.fix
    header_file(install / "diffusion_models" / "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
                wan_shapes(5120, 40, 16))
    header_file(install / "text_encoders" / "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                {"shared.weight": (256384, 4096), "encoder.block.0.layer.0.SelfAttention.q.weight": (4096, 4096)})
    header_file(install / "text_encoders" / "t5xxl_fp16.safetensors", {"shared.weight": (32128, 4096)})
    header_file(install / "vae" / "wan_2.1_vae.safetensors", {"decoder.middle.0.residual.0.gamma": (384, 1, 1, 1)})
    full = wan_models.check_wan_models(context())
    assert full.status == doctor.OK, full.message
    for words in ("wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors: Wan 2.2 T2V A14B, low-noise expert",
                  "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors: Wan 2.2 T2V A14B, high-noise expert",
                  "umt5_xxl_fp8_e4m3fn_scaled.safetensors: umT5-XXL", "wan_2.1_vae.safetensors: Wan 2.1 VAE"):
        assert words in full.message
    assert "t5xxl_fp16" not in full.message      # T5-XXL (Flux, SD3) is not Wan's text encoder


def test_ti2v_5b_needs_the_wan22_vae_and_damaged_files_are_named(install):
    header_file(install / "diffusion_models" / "wan2.2_ti2v_5B_fp16.safetensors", wan_shapes(3072, 30, 48))
    header_file(install / "text_encoders" / "umt5.safetensors", {"shared.weight": (256384, 4096)})
    header_file(install / "vae" / "wan_2.1_vae.safetensors", {"decoder.middle.0.residual.0.gamma": (384, 1, 1, 1)})
    result = wan_models.check_wan_models(context())
    assert result.status == doctor.WARN and "no Wan 2.2 VAE (wan2.2_vae.safetensors)" in result.message
    header_file(install / "vae" / "wan2.2_vae.safetensors", {"decoder.middle.0.residual.0.gamma": (1024, 1, 1, 1),
                                                            "decoder.upsamples.0.upsamples.0.residual.2.weight": (4,)})
    assert wan_models.check_wan_models(context()).status == doctor.OK
    path = install / "diffusion_models" / "wan2.2_ti2v_5B_fp16.safetensors"
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    damaged = wan_models.check_wan_models(context())
    assert damaged.status == doctor.WARN and "damaged: wan2.2_ti2v_5B_fp16.safetensors" in damaged.message
