"""Every UI workflow in the real ComfyUI frontend, in headless Chromium.

The host serves its own frontend (the 2024 tree's web/ folder; modern ComfyUI the registry's
comfyui-frontend-package). Each workflow is loaded the way the file-open path loads it, must
show no missing node type, no widget that did not take its saved value or holds a value outside
its range or list (model file names aside: none are installed here), no link the frontend drops
or finds incompatible, no console error and no warning dialog. Then the frontend's own
``app.graphToPrompt()`` output is posted to ``/prompt``: the only validation errors allowed are
missing model files (and the face model pack), and the output must equal the committed API twin.
Differences left out, each ignored by the backend or invisible to it: ``_meta`` titles; the
2024 frontend's ``upload: "image"`` (LoadImage's upload button); the value the 2024 frontend keeps
for a socket-only (forceInput) input's hidden widget.

The user's photos and videos the workflows name are placed in the host's input folder first (small
generated files); third-party packs the host lacks are the test stand-ins of tests/stand_in_nodes,
with a frontend stand-in for VideoHelperSuite's widget handling.

The modern frontend's own views of the pack (a host that serves comfyui-frontend-package; the 2024 tree's
web/ frontend has neither): the Templates browser lists our workflows under the pack's name, each with its
thumbnail; and loading a workflow whose model files are missing offers each file's download from the address
the workflow carries (the ``models`` metadata of its loaders), caught in the page rather than followed.

Skipped, with the reason, only where Debian's chromium / chromium-driver are not installed.
"""
import copy
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import host
import workflow_checks as wc
from pv_tools import comfy_frontend
from pv_tools.workflow_inputs import input_files, place_input_files

pytestmark = [pytest.mark.server, pytest.mark.browser]

REPO = Path(__file__).resolve().parent.parent
OWN_DATA = Path(__file__).resolve().parent / "data" / "browser"


def ui_workflows():
    """The example workflows (workflows/*.json) and our own small one (tests/data/browser)."""
    found = sorted((REPO / "workflows").glob("*.json")) + sorted(
        p for p in OWN_DATA.glob("*.json") if not p.name.endswith(".api.json"))
    return found


def api_twin(path: Path) -> Path:
    if path.parent == OWN_DATA:
        return path.with_name(path.stem + ".api.json")
    return path.parent / "api" / path.name


def as_api(prompt: dict, object_info: dict) -> dict:
    """What the backend reads of a prompt: each node's class_type and inputs.

    Left out: ``_meta`` (titles, display only) and an ``upload`` input the node does not declare
    (the 2024 frontend sends its image upload button as ``upload: "image"``; the backend ignores it).
    """
    out = {}
    for nid, node in prompt.items():
        spec = object_info.get(node["class_type"], {}).get("input", {})
        declared = {**spec.get("required", {}), **spec.get("optional", {})}
        out[nid] = {"class_type": node["class_type"],
                    "inputs": {k: v for k, v in node["inputs"].items() if k != "upload" or k in declared}}
    return out


def prompt_differences(got: dict, want: dict) -> list:
    lines = [f"node {nid}: only in the {'frontend' if nid in got else 'twin'}"
             for nid in sorted(set(got) ^ set(want))]
    for nid in sorted(set(got) & set(want)):
        a, b = got[nid], want[nid]
        if a["class_type"] != b["class_type"]:
            lines.append(f"node {nid}: {a['class_type']} != {b['class_type']}")
            continue
        for name in sorted(set(a["inputs"]) | set(b["inputs"])):
            va, vb = a["inputs"].get(name, "<absent>"), b["inputs"].get(name, "<absent>")
            if va != vb:
                lines.append(f"node {nid} ({a['class_type']}).{name}: frontend {va!r}, twin {vb!r}")
    return lines


def _drop_from_queue(server, prompt_id: str) -> None:
    for path, payload in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {})):
        req = urllib.request.Request(server.url + path, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=30).close()


@pytest.fixture(scope="module")
def frontend(comfy_server):
    reason = comfy_frontend.missing_browser()
    if reason:
        pytest.skip(reason)
    # the user's input photos and videos are in place before the page reads the host's node lists
    made = place_input_files(comfy_server.input,
                             set().union(*(input_files(json.loads(p.read_text())) for p in ui_workflows())))
    try:
        with comfy_frontend.ComfyFrontend(comfy_server.url) as ui:
            yield ui
    finally:  # the server is shared: leave its input folder as other tests expect it
        for path in made:
            path.unlink(missing_ok=True)


def test_there_are_workflows_to_check():
    assert any(p.parent == OWN_DATA for p in ui_workflows())
    for path in ui_workflows():
        assert api_twin(path).is_file(), f"{path.name} has no API twin at {api_twin(path)}"


def test_only_an_endpoint_the_host_lacks_is_set_aside_from_console_errors(comfy_server):
    # a newer frontend polls /api/jobs in the background and logs an error when the host answers 404; that
    # says nothing about the workflow. Every other error stays an error, and so does this one on a host that
    # serves the endpoint (the filter asks the host, it does not trust the text alone).
    page = comfy_frontend.ComfyFrontend(comfy_server.url)  # not opened: the filter needs only the host
    jobs = 'api.js 0:30270 "[Jobs API] Error fetching jobs:" JobsApiError: Failed to fetch jobs: 404'
    real = "app.js 1:200 Uncaught TypeError: Cannot read properties of undefined (reading 'widgets')"
    entries = [{"level": "SEVERE", "source": "console-api", "message": jobs},
               {"level": "SEVERE", "source": "javascript", "message": real},
               {"level": "WARNING", "source": "console-api", "message": "a warning"}]
    try:
        urllib.request.urlopen(comfy_server.url + "/api/jobs", timeout=30).close()
        host_lacks_jobs = False
    except urllib.error.HTTPError as e:
        host_lacks_jobs = e.code == 404
    errors, gaps = page.split_errors(entries)
    assert real in errors and "a warning" not in errors
    assert (errors, gaps) == (([real], [jobs]) if host_lacks_jobs else ([jobs, real], []))
    page._gaps = {}  # a host that serves every endpoint: nothing is set aside
    assert page.split_errors(entries) == ([jobs, real], [])


@pytest.mark.parametrize("path", ui_workflows(), ids=lambda p: p.stem)
def test_workflow_loads_and_converts_in_the_real_frontend(frontend, comfy_server, path):
    workflow = json.loads(path.read_text())
    core_wan = {"UNETLoader", "CLIPLoader", "VAELoader"} <= {n["type"] for n in workflow["nodes"]}
    lacking = sorted({n["type"] for n in workflow["nodes"] if n["type"] != "Note"} - set(comfy_server.get("/object_info")))
    if core_wan and lacking:  # the 2024 host predates Wan (its stand-ins cover third-party packs, not core nodes)
        pytest.skip(f"{path.stem} needs core Wan nodes this ComfyUI host lacks ({', '.join(lacking)}): run with "
                    "COMFYUI_ROOT set to a modern ComfyUI")
    report = frontend.load(workflow, path.name)

    assert report["missing"] == [], f"node types the frontend does not know: {report['missing']}"
    assert report["problems"] == [], "\n".join(report["problems"])
    assert report["console_errors"] == [], "\n".join(report["console_errors"])
    assert report["overlays"] == [], f"the load opened: {report['overlays']}"
    assert report["files"]["inputs"] == [], f"input files not on the host: {report['files']['inputs']}"

    prompt = frontend.graph_to_prompt()
    assert "__error__" not in prompt, prompt.get("__error__")
    object_info = comfy_server.get("/object_info")
    missing = wc.missing_model_inputs(prompt, object_info, comfy_server.models)
    # the model files the frontend flagged are the ones the host misses too
    assert {f["value"] for f in report["files"]["models"]} <= set(missing.values())
    status, body = comfy_server.post_prompt(prompt)
    if status == 200:  # accepted (outputs that need no model file validate): this test does not run it
        _drop_from_queue(comfy_server, body["prompt_id"])
    else:
        assert status == 400, body
    reported, other = wc.other_validation_errors(body, missing)
    assert other == [], "\n".join(other)
    assert reported == set(missing), "the host did not report every missing model file"

    twin = json.loads(api_twin(path).read_text())
    differences = prompt_differences(as_api(prompt, object_info), as_api(twin, object_info))
    assert differences == [], f"the frontend's conversion differs from {api_twin(path)}:\n" + "\n".join(differences)


# --- the modern frontend's Templates browser and download offers --------------------------------
def _modern(ui) -> None:
    version = ui.frontend_version()
    if not version[:1].isdigit():
        pytest.skip(f"this host serves the frontend {version}, which has no Templates browser for custom node "
                    "packs and no download offers for missing models: run with COMFYUI_ROOT set to a modern ComfyUI")


def test_templates_browser_lists_every_workflow_under_the_pack_with_its_thumbnail(frontend, comfy_server):
    _modern(frontend)
    names = sorted(p.stem for p in (REPO / "workflows").glob("*.json"))
    module = host.PACK_MODULE  # the pack's folder in the host's custom_nodes: the category's name
    assert sorted(comfy_server.get("/workflow_templates")[module]) == names
    shown = frontend.templates(module)
    assert shown["found"], f"no '{module}' category in the Templates browser:\n{shown['text']}"
    thumbnails = {t["src"].split("?")[0].rsplit("/", 1)[-1]: t["status"] for t in shown["thumbnails"]}
    assert thumbnails == {f"{name}.jpg": 200 for name in names}, shown["thumbnails"]
    assert shown["pictures"] >= len(names)
    assert [n for n in names if n not in shown["text"]] == []


def test_frontend_offers_the_downloads_of_a_workflows_missing_models(comfy_server):
    reason = comfy_frontend.missing_browser()
    if reason:
        pytest.skip(reason)
    path = REPO / "workflows" / "04_generate_with_style_lora.json"  # checkpoint, two LoRAs, motion model
    workflow = json.loads(path.read_text())
    carried = {m["name"]: m for node in workflow["nodes"] for m in node.get("properties", {}).get("models", [])}
    assert len(carried) == 4
    assert not any(any(comfy_server.models.rglob(name)) for name in carried)  # missing on this host
    with comfy_frontend.ComfyFrontend(comfy_server.url,
                                      settings={"Comfy.Workflow.ShowMissingModelsWarning": True}) as ui:
        _modern(ui)
        folders = {f["name"] for f in comfy_server.get("/experiment/models")}
        known = {name for name, m in carried.items() if m["directory"] in folders}  # motion model: with ADE only
        report = ui.load(workflow, path.name)
        assert report["missing"] == [], report["missing"]
        offered = ui.download_offers()
    assert known <= set(offered["listed"]), offered
    for offer in offered["offers"]:
        assert offer["url"] == carried[offer["name"]]["url"], offer
    # every frontend offers .safetensors files from huggingface.co and civitai.com for download
    enabled = {o["name"] for o in offered["offers"] if o["enabled"] and o["url"]}
    assert {name for name in known if name.endswith(".safetensors")} <= enabled, offered


# --- the check itself: broken variants of our small workflow must be reported ---------------------
def _node(workflow, node_id):
    return next(n for n in workflow["nodes"] if n["id"] == node_id)


def _unknown_type(wf):
    _node(wf, 3)["type"] = "PV_NoSuchNode"


def _seed_without_control_value(wf):  # the extra value after a seed forgotten: every later widget shifts
    _node(wf, 7)["widgets_values"].remove("fixed")


def _sampler_not_in_list(wf):
    _node(wf, 7)["widgets_values"][4] = "lcm_turbo"


def _strength_out_of_range(wf):
    _node(wf, 3)["widgets_values"][0] = 5.0


def _vae_into_model_socket(wf):
    link = next(link for link in wf["links"] if link[0] == 6)  # Apply SIA MODEL -> KSampler model
    link[1:3], link[5] = [1, 2], "VAE"
    _node(wf, 3)["outputs"][0]["links"] = []
    _node(wf, 1)["outputs"][2]["links"].append(6)


def _one_value_too_many(wf):
    _node(wf, 6)["widgets_values"].append(7)


BROKEN = {
    # the 2025 frontend names the type in a warning dialog; newer ones mark the node as failed
    _unknown_type: lambda r: r["missing"] == ["PV_NoSuchNode"] and (
        any("PV_NoSuchNode" in o for o in r["overlays"]) or "node 3 (PV_NoSuchNode) is marked as failed" in r["problems"]),
    _seed_without_control_value: lambda r: any("node 7 (KSampler) widgets: saved" in p for p in r["problems"]),
    _sampler_not_in_list: lambda r: any("'sampler_name': \"lcm_turbo\" is not one of" in p for p in r["problems"]),
    _strength_out_of_range: lambda r: any("'strength': 5 outside [-2, 2]" in p for p in r["problems"]),
    _vae_into_model_socket: lambda r: any("(VAE) -> KSampler.model (MODEL)" in p for p in r["problems"]),
    _one_value_too_many: lambda r: any("node 6 (EmptyLatentImage) widgets: saved [512,512,1,7]" in p
                                       for p in r["problems"]),
}


@pytest.mark.parametrize("breakage", list(BROKEN), ids=lambda f: f.__name__.strip("_"))
def test_the_check_reports_a_broken_workflow(frontend, breakage):
    workflow = json.loads((OWN_DATA / "sia_still_image.json").read_text())
    broken = copy.deepcopy(workflow)
    breakage(broken)
    report = frontend.load(broken, "broken.json")
    report.pop("console")
    assert BROKEN[breakage](report), report
