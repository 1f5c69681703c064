"""Identity names on disk: a renamed or shared adapter loads with its own token, a clash of token names is
resolved, and name clashes are looked for in every sia and embeddings folder (extra_model_paths.yaml).

The files are written by the trainer's own writer (training/identity_files.py) into the host's model
folders, loaded by the real Load SIA Adapter node, and the trigger phrase is tokenized by a real ComfyUI CLIP
(SD1.5's tokenizer, a small text model) reading the host's embeddings folders, as a prompt would be.
"""
import hashlib
import os
import shutil

import folder_paths
import pytest
import torch
from safetensors.torch import save_file

from comfyui_personalvideo.nodes.load_sia_adapter import LoadSIAAdapter
from comfyui_personalvideo.training import identity_files
from comfyui_personalvideo.training.errors import TrainingError

import tiny_models

HIDDEN = 32   # the tiny CLIP's width: the size of a token vector


@pytest.fixture
def folders():
    """The first sia and embeddings folders, and a cleanup of every file the test names."""
    made = []
    yield folder_paths.get_folder_paths("sia")[0], folder_paths.get_folder_paths("embeddings")[0], made
    for path in made:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)


def _train(name, tiny_model, make_adapter, seed, overwrite=False):
    """What the trainer leaves on disk for ``name``: an adapter carrying its token, and the token file."""
    adapter = make_adapter(tiny_model, seed=seed, name=name)
    adapter.info.training["class_word"] = "woman"
    adapter.info.trigger = f"embedding:{name} woman"
    vector = torch.randn(1, HIDDEN, generator=torch.Generator().manual_seed(seed))
    adapter.embedding = vector
    return identity_files.write_identity(name, adapter, vector, overwrite=overwrite), vector


def _embedded(clip, prompt):
    """The vectors a prompt's ``embedding:`` words were replaced by when ComfyUI tokenized it."""
    found = []
    for batch in clip.tokenize(prompt)["l"]:
        found += [token for token, _weight in batch if isinstance(token, torch.Tensor)]
    assert found, f"no embedding was found for {prompt!r}"
    return torch.stack([t.float().reshape(-1) for t in found])


def test_a_renamed_adapter_loads_with_its_own_token_after_its_name_is_trained_again(folders, tiny_model,
                                                                                      make_adapter):
    """Train alice, rename the file to alice_v1, train alice again: alice_v1 loads, its trigger calls its own
    token (written as embedding:alice_v1), and alice still calls the new one."""
    sia_dir, emb_dir, made = folders
    made += [os.path.join(sia_dir, n) for n in ("alice.safetensors", "alice_v1.safetensors")]
    made += [os.path.join(emb_dir, n) for n in ("alice.safetensors", "alice_v1.safetensors")]
    first, v1 = _train("alice", tiny_model, make_adapter, seed=1)
    os.replace(first["sia"], os.path.join(sia_dir, "alice_v1.safetensors"))
    _again, v2 = _train("alice", tiny_model, make_adapter, seed=2, overwrite=True)

    old, old_trigger = LoadSIAAdapter().load("alice_v1.safetensors")
    new, new_trigger = LoadSIAAdapter().load("alice.safetensors")
    assert old_trigger == "embedding:alice_v1 woman" and old.info.name == "alice_v1"
    assert new_trigger == "embedding:alice woman" and new.info.name == "alice"
    clip = tiny_models.tiny_clip(HIDDEN)
    assert torch.equal(_embedded(clip, old_trigger + ", smiling"), v1)
    assert torch.equal(_embedded(clip, new_trigger + ", smiling"), v2)
    assert torch.equal(old.embedding, v1) and old.info.training["class_word"] == "woman"
    written = os.path.join(emb_dir, "alice_v1.safetensors")
    stamp = os.stat(written).st_mtime_ns
    assert LoadSIAAdapter().load("alice_v1.safetensors")[1] == old_trigger      # its token is there now
    assert os.stat(written).st_mtime_ns == stamp                                # and is not written again


def test_a_clash_of_token_names_gets_a_name_of_its_own(folders, tiny_model, make_adapter):
    """A shared bob.safetensors whose name another token holds (another identity, another tool's .pt) is
    registered as bob-<hash>: the same name for the same token every time, and it calls that token."""
    sia_dir, emb_dir, made = folders
    theirs, vector = _train("bob", tiny_model, make_adapter, seed=3)
    shared = os.path.join(sia_dir, "bob.safetensors")
    made += [shared, theirs["embedding"]]
    save_file({"emb_params": torch.randn(1, HIDDEN)}, theirs["embedding"])     # our own bob, another person
    hashed = "bob-" + hashlib.sha256(vector.float().numpy().tobytes()).hexdigest()[:8]   # the documented name
    made.append(os.path.join(emb_dir, hashed + ".safetensors"))
    adapter, trigger = LoadSIAAdapter().load("bob.safetensors")
    assert trigger == f"embedding:{hashed} woman" and adapter.info.name == hashed
    assert torch.equal(_embedded(tiny_models.tiny_clip(HIDDEN), trigger), vector)
    assert LoadSIAAdapter().load("bob.safetensors")[1] == trigger

    os.unlink(theirs["embedding"])                     # another tool's embedding of that name, not ours to read
    foreign = os.path.join(emb_dir, "bob.pt")
    made.append(foreign)
    with open(foreign, "wb") as f:
        f.write(b"PK\x03\x04 a pickled tensor")
    assert LoadSIAAdapter().load("bob.safetensors")[1] == trigger
    assert open(foreign, "rb").read().startswith(b"PK")                  # never replaced, never unpickled


def test_name_clashes_are_found_in_every_folder_extra_model_paths_adds(folders, tmp_path, tiny_model,
                                                                       make_adapter):
    sia_dir, emb_dir, made = folders
    saved = {kind: folder_paths.folder_names_and_paths[kind] for kind in ("sia", "embeddings")}
    extra_sia, extra_emb = tmp_path / "sia2", tmp_path / "embeddings2"
    (extra_emb / "people").mkdir(parents=True)
    extra_sia.mkdir()
    for kind, extra in (("sia", extra_sia), ("embeddings", extra_emb)):
        paths, exts = saved[kind]
        folder_paths.folder_names_and_paths[kind] = (list(paths) + [str(extra)], exts)
    try:
        (extra_emb / "people" / "carol.pt").write_bytes(b"PK")
        (extra_sia / "dave.safetensors").write_bytes(b"x")
        for name, where in (("carol", extra_emb / "people" / "carol.pt"), ("dave", extra_sia / "dave.safetensors")):
            assert identity_files.existing(name) == [str(where)]
            with pytest.raises(TrainingError, match=f"an identity named '{name}' exists already.*{where}"):
                identity_files.check_free(name, overwrite=False)
        # overwriting replaces a file where it is; a file of that name it would not replace is refused
        assert identity_files.check_free("dave", overwrite=True)["sia"] == str(extra_sia / "dave.safetensors")
        with pytest.raises(TrainingError, match="also taken by .*carol.pt.*two meanings"):
            identity_files.check_free("carol", overwrite=True)
        made.append(os.path.join(emb_dir, "erin.safetensors"))
        _train("erin", tiny_model, make_adapter, seed=4)
        os.replace(os.path.join(sia_dir, "erin.safetensors"), extra_sia / "erin.safetensors")
        paths = identity_files.identity_paths("erin")
        assert paths == {"sia": str(extra_sia / "erin.safetensors"), "embedding": os.path.join(emb_dir,
                                                                                                "erin.safetensors")}
    finally:
        folder_paths.folder_names_and_paths.update(saved)
