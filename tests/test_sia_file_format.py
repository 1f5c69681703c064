"""The adapter file: exact round trip, the names other tools use, and refusal of bad files."""
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui_personalvideo.sia import SIAError, apply_sia, load_adapter, save_adapter
from comfyui_personalvideo.sia import file_format, naming

import sampling


def test_round_trip_is_exact(tmp_path, tiny_model, make_adapter):
    adapter = make_adapter(tiny_model)
    adapter.info.training = {"lr": 1e-4, "iterations": 400}
    adapter.embedding = torch.randn(1, 32)
    path = save_adapter(adapter, str(tmp_path / "alice.safetensors"))
    loaded = load_adapter(path)
    assert loaded.paths == adapter.paths
    for p in adapter.paths:
        assert torch.equal(loaded.down[p], adapter.down[p]) and torch.equal(loaded.up[p], adapter.up[p])
    assert loaded.alpha == adapter.alpha and loaded.rank == adapter.rank
    assert loaded.info == adapter.info
    assert torch.equal(loaded.embedding, adapter.embedding)
    assert loaded.source == path
    assert [f for f in os.listdir(tmp_path)] == ["alice.safetensors"]  # no temporary file left


def test_file_keys_and_header(tmp_path, tiny_model, make_adapter):
    adapter = make_adapter(tiny_model)
    path = save_adapter(adapter, str(tmp_path / "a.safetensors"))
    keys = set(load_file(path))
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert "lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_attn1_to_v.lora_up.weight" in keys
    assert "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_k.alpha" in keys
    assert len(keys) == 33 * 3
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "personalvideo-sia" and meta["format_version"] == "1"
    assert meta["base"] == "sd15" and meta["rank"] == "4" and float(meta["alpha"]) == 4.0
    assert meta["name"] == "tester" and meta["trigger"] == "embedding:tester person"
    assert "start_percent" not in meta and json.loads(meta["training"]) == {}   # the Apply node's widget decides


def test_ldm_named_file_reads_as_the_same_adapter(tmp_path, tiny_model, make_adapter, conds):
    adapter = make_adapter(tiny_model)
    tensors = {}
    for p in adapter.paths:
        key = "lora_unet_" + p.replace(".", "_")
        tensors[key + ".lora_down.weight"] = adapter.down[p].contiguous()
        tensors[key + ".lora_up.weight"] = adapter.up[p].contiguous()
        tensors[key + ".alpha"] = torch.tensor(adapter.alpha)
    save_file(tensors, str(tmp_path / "ldm.safetensors"))
    loaded = load_adapter(str(tmp_path / "ldm.safetensors"))
    assert loaded.paths == adapter.paths
    assert all(torch.equal(loaded.up[p], adapter.up[p]) for p in adapter.paths)
    a, _ = sampling.sample(apply_sia(tiny_model, adapter, 1.0, 0.0)[0], *conds, steps=1)
    b, _ = sampling.sample(apply_sia(tiny_model, loaded, 1.0, 0.0)[0], *conds, steps=1)
    assert torch.equal(a, b)


def _saved(tmp_path, tiny_model, make_adapter, name="a.safetensors"):
    return save_adapter(make_adapter(tiny_model), str(tmp_path / name))


def _rewrite(path, edit, metadata_edit=None):
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(path)
    edit(tensors)
    if metadata_edit:
        metadata_edit(meta)
    save_file(tensors, path, metadata=meta)
    return path


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_files_are_refused_with_the_file_named(tmp_path, tiny_model, make_adapter, damage):
    path = _saved(tmp_path, tiny_model, make_adapter)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write({"truncate": data[: len(data) // 2], "garbage": os.urandom(4096), "empty": b""}[damage])
    with pytest.raises(SIAError, match="not a readable .safetensors file") as e:
        load_adapter(path)
    assert path in str(e.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SIAError, match="not found: .*nope.safetensors"):
        load_adapter(str(tmp_path / "nope.safetensors"))


def test_pickle_files_are_never_unpickled(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.safetensors"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Boom()}, str(path))
    with pytest.raises(SIAError):
        load_adapter(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.pop(next(k for k in t if k.endswith("attn1_to_q.lora_up.weight"))), "lacks"),
    (lambda t: t.__setitem__("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_q.lora_up.weight",
                             torch.zeros(32, 4)), "unexpected key"),
    (lambda t: t.__setitem__("model.diffusion_model.out.0.weight", torch.zeros(4)), "unexpected key"),
    (lambda t: [t.pop(k) for k in list(t) if "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k" in k],
     "lacks some of to_q/to_k/to_v"),
    (lambda t: t.__setitem__(next(k for k in t if k.endswith(".lora_down.weight")), torch.zeros(3, 32)),
     "rank"),
    (lambda t: t.__setitem__(next(k for k in t if k.endswith(".lora_up.weight")), torch.zeros(48, 4)),
     "square"),
    (lambda t: t.__setitem__(next(k for k in t if k.endswith(".alpha")), torch.tensor(2.0)), "one alpha"),
    (lambda t: t.__setitem__(next(k for k in t if k.endswith(".alpha")), torch.tensor([4.0, 4.0])),
     "alpha must be a single number"),
    (lambda t: t.__setitem__(next(k for k in t if k.endswith(".lora_up.weight")),
                             torch.full((32, 4), float("nan"))), "NaN"),
    (lambda t: t.__setitem__(next(k for k in t if k.endswith(".lora_up.weight")),
                             torch.zeros(32, 4, dtype=torch.int32)), "floating-point"),
    (lambda t: t.clear() or t.__setitem__("something_else", torch.zeros(1)), "unexpected key"),
])
def test_bad_keys_and_shapes_are_refused(tmp_path, tiny_model, make_adapter, edit, message):
    path = _rewrite(_saved(tmp_path, tiny_model, make_adapter), edit)
    with pytest.raises(SIAError, match=message) as e:
        load_adapter(path)
    assert path in str(e.value)


@pytest.mark.parametrize("field,value,message", [
    ("base", "sdxl", "base model 'sdxl'"),
    ("format", "something", "not a personalvideo-sia file"),
    ("format_version", "99", "newer ComfyUI-PersonalVideo"),
    ("rank", "8", "header says rank 8"),
    ("training", "{not json", "not valid JSON"),
    ("num_res_blocks", "two", "not a number"),
])
def test_bad_header_is_refused(tmp_path, tiny_model, make_adapter, field, value, message):
    path = _rewrite(_saved(tmp_path, tiny_model, make_adapter), lambda t: None,
                    lambda m: m.__setitem__(field, value))
    with pytest.raises(SIAError, match=message):
        load_adapter(path)


def test_file_of_an_earlier_release_with_a_start_percent_still_loads(tmp_path, tiny_model, make_adapter):
    path = _saved(tmp_path, tiny_model, make_adapter)
    before = load_adapter(path)
    path = _rewrite(path, lambda t: None, lambda m: m.__setitem__("start_percent", "0.5"))
    after = load_adapter(path)
    assert after.info == before.info and after.paths == before.paths


def test_file_without_our_header_still_loads_with_defaults(tmp_path, tiny_model, make_adapter):
    path = _saved(tmp_path, tiny_model, make_adapter, "plain.safetensors")
    save_file(load_file(path), path)  # same tensors, no metadata (as another trainer might write)
    adapter = load_adapter(path)
    assert adapter.info.name == "plain" and adapter.info.num_res_blocks == 2 and adapter.rank == 4


def test_save_refuses_to_overwrite_when_asked_and_leaves_no_partial_file(tmp_path, tiny_model, make_adapter,
                                                                        monkeypatch):
    adapter = make_adapter(tiny_model)
    path = save_adapter(adapter, str(tmp_path / "x.safetensors"))
    before = open(path, "rb").read()
    with pytest.raises(SIAError, match="already exists"):
        save_adapter(adapter, path, overwrite=False)
    import safetensors.torch

    def failing_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    with pytest.raises(OSError):
        save_adapter(adapter, path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["x.safetensors"]


def test_adapter_for_another_base_is_refused_at_apply_and_nothing_is_patched(tmp_path, make_adapter):
    import tiny_models

    small = tiny_models.tiny_sd15_model()
    wide_config = tiny_models.sd15_model_config(tiny_models.sd15_unet_config(model_channels=64))
    import comfy.model_base
    import comfy.model_patcher

    wide = comfy.model_patcher.ModelPatcher(comfy.model_base.BaseModel(wide_config, device="meta"),
                                            load_device="cpu", offload_device="cpu")
    adapter = load_adapter(_saved(tmp_path, small, make_adapter))
    with pytest.raises(SIAError, match=r"is 64->64 in the MODEL but 32->32 in the adapter") as e:
        apply_sia(wide, adapter, 1.0, 0.75)
    assert adapter.source in str(e.value)
    assert wide.object_patches == {} and wide.model_options.get("transformer_options", {}) == {}


def test_adapter_with_missing_layers_is_refused_at_apply(tiny_model, make_adapter):
    adapter = make_adapter(tiny_model)
    gone = adapter.paths[-1]
    del adapter.down[gone], adapter.up[gone]
    with pytest.raises(SIAError, match="missing from the adapter"):
        apply_sia(tiny_model, adapter, 1.0, 0.75)
    assert tiny_model.object_patches == {}


def test_model_without_spatial_transformers_is_refused(tiny_model, make_adapter):
    import comfy.model_base
    import comfy.model_patcher

    import tiny_models

    config = tiny_models.sd15_unet_config()
    config.update(transformer_depth=[0] * 4, transformer_depth_output=[0] * 6, transformer_depth_middle=-1,
                  context_dim=None, use_spatial_transformer=False)
    bare = comfy.model_patcher.ModelPatcher(
        comfy.model_base.BaseModel(tiny_models.sd15_model_config(config), device="meta"), "cpu", "cpu")
    with pytest.raises(SIAError, match="no spatial self-attention layers of the SD1.5 UNet layout"):
        apply_sia(bare, make_adapter(tiny_model), 1.0, 0.75)
    with pytest.raises(SIAError, match="not a diffusion model"):
        apply_sia(object(), make_adapter(tiny_model), 1.0, 0.75)


@pytest.mark.parametrize("strength,start,message", [
    (5.0, 0.75, "strength must be between"), (float("nan"), 0.75, "strength must be between"),
    (1.0, 1.5, "start_percent must be between"), (1.0, -0.1, "start_percent must be between"),
    ("1", 0.75, "strength must be between"),
])
def test_out_of_range_settings_are_refused(tiny_model, make_adapter, strength, start, message):
    with pytest.raises(SIAError, match=message):
        apply_sia(tiny_model, make_adapter(tiny_model), strength, start)
    assert tiny_model.object_patches == {}


def test_module_keys_parse_both_namings():
    assert naming.parse_kohya_module_key("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k") == \
        "input_blocks.4.1.transformer_blocks.0.attn1.to_k"
    assert naming.parse_kohya_module_key("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_k") == \
        "input_blocks.4.1.transformer_blocks.0.attn1.to_k"
    assert naming.parse_kohya_module_key("lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn1_to_v") == \
        "output_blocks.11.1.transformer_blocks.0.attn1.to_v"
    assert naming.parse_kohya_module_key("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_q") is None
    assert naming.parse_kohya_module_key("lora_te_text_model_encoder_layers_0_self_attn_q_proj") is None
    assert file_format.FORMAT_NAME == "personalvideo-sia"


def _checkpoint_like(path, gib: float = 6.0):
    """A real .safetensors file laid out like a multi-GB SD checkpoint (one F16 tensor of ``gib`` GiB under a
    checkpoint key, plus a small one), its data left sparse so it costs no disk space."""
    numel = int(gib * 2 ** 30) // 2
    header = {"model.diffusion_model.input_blocks.0.0.weight": {"dtype": "F16", "shape": [numel],
                                                                "data_offsets": [0, numel * 2]},
              "first_stage_model.decoder.conv_in.bias": {"dtype": "F32", "shape": [512],
                                                         "data_offsets": [numel * 2, numel * 2 + 2048]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        f.truncate(8 + len(raw) + numel * 2 + 2048)
    return str(path)


def test_a_checkpoint_dropped_into_models_sia_is_refused_from_its_header(tmp_path, tiny_model, make_adapter,
                                                                         monkeypatch):
    """The header's keys, shapes and dtypes are checked before any tensor is read: a 6 GiB checkpoint is
    refused without a byte of its data read (the library that would read tensors is never opened on it);
    a real adapter still loads through that same library."""
    import safetensors

    big = _checkpoint_like(tmp_path / "realisticVision.safetensors")
    good = _saved(tmp_path, tiny_model, make_adapter)
    real_open, opened = safetensors.safe_open, []

    def watched_open(filename, *args, **kwargs):
        opened.append(os.path.basename(str(filename)))
        if os.path.abspath(str(filename)) == big:
            raise AssertionError("the checkpoint's tensors were about to be read")
        return real_open(filename, *args, **kwargs)

    monkeypatch.setattr(safetensors, "safe_open", watched_open)
    with pytest.raises(SIAError, match=r"2 unexpected key\(s\).*model\.diffusion_model") as e:
        load_adapter(big)
    assert big in str(e.value) and opened == []
    assert load_adapter(good).paths and opened == ["a.safetensors"]


@pytest.mark.parametrize("header,message", [
    ({"k": {"dtype": "F32", "shape": [4], "data_offsets": [0, 999]}}, "outside the file"),
    ({"k": {"dtype": "F32", "shape": [5], "data_offsets": [0, 16]}}, "16 bytes for shape"),
    ({"k": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}}, "no valid dtype and shape"),
    ({"__metadata__": {"rank": 4}}, "metadata is not a table of texts"),
])
def test_inconsistent_headers_are_refused_before_reading(tmp_path, header, message):
    raw = json.dumps(header).encode()
    path = tmp_path / "odd.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(16))
    with pytest.raises(SIAError, match=f"not a readable .safetensors file.*{message}"):
        load_adapter(str(path))


def test_writes_reach_the_disk_before_the_rename_and_the_folder_after(tmp_path, tiny_model, make_adapter,
                                                                      monkeypatch):
    """fsync of the new content while it is still the temporary file (the target holds the old bytes), then
    of the folder once the rename is done; for one file and for an identity's pair of files."""
    from comfyui_personalvideo.sia import atomic_file

    target = tmp_path / "x.safetensors"
    target.write_bytes(b"old")
    real_fsync, synced = os.fsync, []

    def watched_fsync(fd):
        where = os.readlink(f"/proc/self/fd/{fd}")
        synced.append((where, target.read_bytes() == b"old"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", watched_fsync)
    save_adapter(make_adapter(tiny_model), str(target))
    assert len(synced) == 2
    (first, old_then), (second, _) = synced
    assert os.path.dirname(first) == str(tmp_path) and os.path.basename(first).startswith(".x.safetensors.")
    assert old_then and second == str(tmp_path)
    synced.clear()
    target.write_bytes(b"old")
    other = tmp_path / "sub" / "y.bin"
    atomic_file.atomic_write_all([(str(target), lambda p: open(p, "wb").write(b"new")),
                                  (str(other), lambda p: open(p, "wb").write(b"y"))])
    files = [w for w, _ in synced if os.path.basename(w).startswith(".")]
    assert len(files) == 2 and all(old for w, old in synced if w in files)       # both staged files, before
    assert [w for w, _ in synced if w not in files] == [str(tmp_path), str(other.parent)]   # then both folders
    assert target.read_bytes() == b"new"


def test_a_detached_copy_shares_nothing_with_the_live_adapter(tiny_model, make_adapter):
    live = make_adapter(tiny_model)
    live.info.training["history"] = {"loss": [1.0]}
    copy = live.detached_copy()
    copy.info.training["history"]["loss"].append(0.5)
    copy.info.training["identity_score"] = {"face_similarity": 0.9}
    copy.info.name = "other"
    assert live.info.training == {"history": {"loss": [1.0]}} and live.info.name == "tester"
    assert copy.info.training["history"]["loss"] == [1.0, 0.5]
