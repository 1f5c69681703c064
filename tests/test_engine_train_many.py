"""`personalvideo train-many` on a real local Ray (2 CPUs) with small single files: three identities, one with a
photo that has no face: two are trained, one fails with its reason, the other two are untouched by it; a second
run skips what is done."""
import csv
import json
import os

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")
ray = pytest.importorskip("ray")

from comfyui_personalvideo.engine import cli, train_many  # noqa: E402
from comfyui_personalvideo.engine.errors import EngineError  # noqa: E402

import engine_models  # noqa: E402
from test_engine_cli import SMALL_TRAIN, common, files  # noqa: E402,F401
from face_fixtures import tiny_onnx  # noqa: E402,F401


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": train_many.worker_path(), "HF_HUB_OFFLINE": "1",
                                       "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


def manifest(files, path):  # noqa: F811
    from PIL import Image

    blank = files["root"] / "blank.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(blank)
    os.makedirs(files["root"] / "carol_photos", exist_ok=True)
    os.replace(files["root"] / "blank.png", files["root"] / "carol_photos" / "blank.png")
    path.write_text("name,class_word,photos,sia_iterations\n"
                    f"alice,woman,{files['photo']},\n"
                    f"carol,woman,carol_photos,\n"        # a folder, relative to the manifest; no face in it
                    f"dave,man,{files['photo']},3\n")
    return str(path)


def test_three_identities_one_without_a_face(files, local_ray, tmp_path, capsys):  # noqa: F811
    models_dir = tmp_path / "models"
    argv = ["train-many", manifest(files, files["root"] / "identities.csv"), "--faces", files["faces"],
            "--summary", str(tmp_path / "summary")] + common(files) + SMALL_TRAIN
    argv[argv.index("--models-dir") + 1] = str(models_dir)
    assert cli.main(argv) == cli.EXIT_INPUT          # one failed
    rows = {r["name"]: r for r in json.loads((tmp_path / "summary.json").read_text())}
    with open(tmp_path / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == ["alice", "carol", "dave"]
    assert rows["alice"]["status"] == rows["dave"]["status"] == "trained", rows
    assert rows["carol"]["status"] == "failed" and rows["carol"]["attempts"] == 2
    assert "usable face" in rows["carol"]["error"]
    for name in ("alice", "dave"):
        assert os.path.isfile(rows[name]["sia"]) and os.path.isfile(rows[name]["embedding"])
        assert rows[name]["attempts"] == 1 and rows[name]["seconds"] > 0
        assert isinstance(rows[name]["final_similarity"], float)
    from comfyui_personalvideo.sia import load_adapter

    assert load_adapter(rows["dave"]["sia"]).info.training["sia"]["iterations"] == 3   # the row's override
    assert not os.path.exists(models_dir / "sia" / "carol.safetensors")
    mtimes = {n: os.path.getmtime(rows[n]["sia"]) for n in ("alice", "dave")}

    # again: the two done are skipped (same settings), carol is tried again and fails again
    assert cli.main(argv) == cli.EXIT_INPUT
    again = {r["name"]: r for r in json.loads((tmp_path / "summary.json").read_text())}
    assert again["alice"]["status"] == again["dave"]["status"] == "skipped"
    assert again["carol"]["status"] == "failed"
    assert {n: os.path.getmtime(again[n]["sia"]) for n in ("alice", "dave")} == mtimes
    assert "2 identities" not in capsys.readouterr().out

    # other settings for existing files: refused with the reason unless --overwrite
    changed = argv + ["--rank", "2"]
    assert cli.main(changed) == cli.EXIT_INPUT
    third = {r["name"]: r for r in json.loads((tmp_path / "summary.json").read_text())}
    assert "differ from this run: the settings sia_rank (4 stored, 2 now)" in third["alice"]["error"]


def test_manifest_problems_are_named(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("name,photos,colour\nx,a.jpg,red\n")
    with pytest.raises(EngineError, match="missing column.*class_word.*unknown column.*colour"):
        train_many.read_manifest(str(bad))
    bad.write_text("name,class_word,photos\nx,man,a.jpg\nX,man,b.jpg\n")
    with pytest.raises(EngineError, match="appears twice"):
        train_many.read_manifest(str(bad))


def test_the_record_decides_which_identities_are_the_same(files, tmp_path):  # noqa: F811
    """An identity is kept ("same") only when the record in its adapter file (the one the Train node writes and
    compares) matches what this run would train from: new photos, another --checkpoint or another negative
    prompt of the training videos are other inputs, and train-many says which."""
    from PIL import Image

    from comfyui_personalvideo.sia import load_adapter

    models_dir = tmp_path / "models"
    base = ["--faces", files["faces"]] + common(files) + SMALL_TRAIN
    base[base.index("--models-dir") + 1] = str(models_dir)
    assert cli.main(["train", "--photos", files["photo"], "--name", "erin", "--class-word", "woman"] + base) == 0
    row = {"name": "erin", "class_word": "woman", "photos": [files["photo"]], "overrides": {}}

    def state(extra=(), **changes):
        args = cli.parse_args(["train-many", "identities.csv"] + base + list(extra))
        return train_many.existing_state(args, dict(row, **changes))

    assert state()[0] == "same"
    flipped = tmp_path / "flipped.png"
    with Image.open(files["photo"]) as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped)
    other = engine_models.save_tiny_checkpoint(str(tmp_path / "other_sd15.safetensors"), seed=1)
    cases = [({"photos": [str(flipped)]}, (), "the reference photos"),
             ({"photos": [files["photo"], str(flipped)]}, (), "the reference photos (1 stored, 2 now"),
             ({}, ["--checkpoint", other], "the MODEL (another checkpoint)"),
             ({}, ["--training-negative", "ugly"], "the settings negative_prompt"),
             ({"class_word": "person"}, (), "the settings class_word ('woman' stored, 'person' now)")]
    for changes, extra, reason in cases:
        found = state(extra, **changes)
        assert found[0] == "different", (changes, extra)
        assert any(reason in why for why in found[2]), found[2]
    record = load_adapter(str(models_dir / "sia" / "erin.safetensors")).info.training["record"]
    assert len(record["photos"]) == 1 and record["base_model"]["motion"] != "none"
