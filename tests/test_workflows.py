"""The example workflows against the real host: node definitions, widget values, links, API twins.

Core nodes and ours are checked against the running host's /object_info; third-party nodes
(AnimateDiff-Evolved, VideoHelperSuite, comfyui_controlnet_aux) against their definitions
recorded from the packs' code (tests/data/node_definitions). Packs the host lacks are served by
test stand-ins generated from those records (tests/stand_in_nodes), so the host's own /prompt
validator checks every twin.
"""
import copy
import json
import re
import shutil

import pytest

from pv_tools import workflow_build, workflow_graph, workflow_models, workflow_settings, workflow_specs

import face_fixtures as ff
import full_models
import workflow_checks as wc

pytestmark = pytest.mark.server

UI_FILES = sorted(workflow_build.WORKFLOWS_DIR.glob("*.json"))
NAMES = [p.stem for p in UI_FILES]


def is_wan(name) -> bool:
    """A workflow on core Wan (UNETLoader / CLIPLoader / VAELoader) rather than SD1.5 + AnimateDiff."""
    return "UNETLoader" in workflow_graph.node_types(workflow_graph.load(name))


SD15_NAMES = [n for n in NAMES if not is_wan(n)]
WAN_NAMES = [n for n in NAMES if is_wan(n)]


def skip_where_the_host_lacks_wan(name, object_info):
    """The 2024 host predates Wan: its core has no ModelSamplingSD3, EmptyHunyuanLatentVideo nor CLIPLoader type wan."""
    missing = workflow_graph.missing_node_types(workflow_graph.load(name), object_info)
    if is_wan(name) and missing:
        pytest.skip(f"{name} needs core Wan nodes this ComfyUI host lacks ({', '.join(missing)}): run with "
                    "COMFYUI_ROOT set to a modern ComfyUI")


def ui(name):
    return json.loads((workflow_build.WORKFLOWS_DIR / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.get("/object_info")


@pytest.fixture(scope="module")
def definitions(object_info):
    return wc.definitions_for(object_info)


def test_the_workflows_with_twins_generated_from_the_description():
    files = workflow_build.build_all()
    assert NAMES == ["01_train_identity", "02_generate_with_identity", "03_generate_with_pose",
                     "04_generate_with_style_lora", "05_train_and_generate", "06_generate_and_score",
                     "07_generate_with_face_detail", "08_two_identities", "09_wan_train_and_generate",
                     "10_wan22_identity_and_style"]
    assert WAN_NAMES == ["09_wan_train_and_generate", "10_wan22_identity_and_style"]
    on_disk = {str(p.relative_to(workflow_build.WORKFLOWS_DIR)) for p in workflow_build.WORKFLOWS_DIR.rglob("*.json")}
    assert on_disk == set(files)
    stale = workflow_build.stale_files(files)
    assert stale == [], f"{stale} out of date: run `python -m tools.workflow_build`"


# the publishers' documented download forms: Hugging Face's resolve path of a file in a repository (the file
# the loader names), Civitai's download endpoint of a model version (with its optional file filters)
HUGGING_FACE = re.compile(r"https://huggingface\.co/[\w.-]+/[\w.-]+/resolve/main/(?:[\w.-]+/)*(?P<file>[\w.-]+)")
CIVITAI = re.compile(r"https://civitai\.com/api/download/models/\d+"
                     r"(?:\?type=Model&format=SafeTensor(?:&size=(?:pruned|full))?(?:&fp=fp(?:16|32))?)?")


def test_every_model_file_has_an_official_download_of_its_documented_form():
    assert len(workflow_models.MODEL_FILES) == len(workflow_models.BY_NAME)  # one entry per file name
    for model in workflow_models.MODEL_FILES:
        hf, civitai = HUGGING_FACE.fullmatch(model.url), CIVITAI.fullmatch(model.url)
        assert hf or civitai, model
        if hf:  # the file is stored under the name the loader uses
            assert hf.group("file") == model.name, model
            assert model.page == model.url.split("/resolve/")[0], model
        else:
            assert re.fullmatch(r"https://civitai\.com/models/\d+\?modelVersionId=" + model.url.split("/")[-1]
                                .split("?")[0], model.page), model
        assert model.directory not in workflow_specs.NO_DOWNLOAD


def test_every_loader_carries_the_download_of_each_file_it_names():
    loaders = 0
    for name in NAMES:
        for node in ui(name)["nodes"]:
            spec = workflow_specs.NODE_SPECS[node["type"]]
            values = dict(zip(spec["widgets"], node["widgets_values"])) if spec["model_widgets"] else {}
            wanted = [{"name": values[w], "url": workflow_models.BY_NAME[values[w]].url, "directory": folder}
                      for w, folder in spec["model_widgets"].items() if folder not in workflow_specs.NO_DOWNLOAD]
            assert node["properties"].get("models", []) == wanted, (name, node["id"], node["type"])
            loaders += bool(wanted)
            # a widget naming a model file is a loader's: its node spec must say so (model_widgets)
            named = [w for w, v in zip(spec["widgets"], node["widgets_values"] if isinstance(node["widgets_values"], list)
                                       else []) if isinstance(v, str) and re.search(r"\.(safetensors|ckpt|pth|pt|sft|gguf)$", v)]
            assert set(named) <= set(spec["model_widgets"]), (name, node["type"], named)
    # checkpoint, AnimateLCM LoRA and motion model in every SD1.5 workflow at least; two experts, umT5, VAE and the
    # style LoRA twice in workflow 10; the 1.3B model, umT5 and the VAE in workflow 09
    assert loaders >= 3 * len(SD15_NAMES) + 6 + 3


def test_every_workflow_has_its_templates_thumbnail():
    from PIL import Image

    folder = workflow_build.WORKFLOWS_DIR
    assert sorted(p.stem for p in folder.glob("*.jpg")) == NAMES, (
        "thumbnails (workflows/<name>.jpg) are made by `python -m tools.screenshot_workflows` with COMFYUI_ROOT set")
    for name in NAMES:
        with Image.open(folder / f"{name}.jpg") as thumb:
            assert thumb.format == "JPEG" and thumb.size == (512, 512)


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_matches_the_node_definitions(name, definitions, object_info):
    skip_where_the_host_lacks_wan(name, object_info)
    assert wc.ui_problems(ui(name), definitions) == []


@pytest.mark.parametrize("name", NAMES)
def test_api_twin_is_the_frontends_conversion_of_the_ui_file(name, definitions, object_info):
    skip_where_the_host_lacks_wan(name, object_info)
    strip = lambda api: {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}  # noqa: E731
    assert strip(wc.api_from_ui(ui(name), definitions)) == strip(workflow_graph.load(name))


def test_checker_catches_what_the_frontend_or_host_would_refuse(definitions):
    base = ui("03_generate_with_pose")
    node = lambda wf, t: next(n for n in wf["nodes"] if n["type"] == t)  # noqa: E731
    cases = {
        "widget values for": lambda wf: node(wf, "KSampler")["widgets_values"].remove("fixed"),
        "is not one of": lambda wf: node(wf, "KSampler")["widgets_values"].__setitem__(4, "lcm_turbo"),
        "above the maximum": lambda wf: node(wf, "PV_ApplySIALateSteps")["widgets_values"].__setitem__(1, 1.5),
        "unknown node type": lambda wf: node(wf, "VAEDecode").__setitem__("type", "VAEDecodeTiledX"),
        "joins": lambda wf: wf["links"][0].__setitem__(5, "CLIP"),
        "no widget of": lambda wf: node(wf, "VHS_VideoCombine")["widgets_values"].__setitem__("fps", 8),
        "beta_schedule": lambda wf: node(wf, "ADE_AnimateDiffLoaderGen1")["widgets_values"].__setitem__(1, "lcm2"),
        "not connected": lambda wf: node(wf, "DWPreprocessor")["inputs"][0].__setitem__("link", None),
        "expected true/false": lambda wf: node(wf, "VHS_VideoCombine")["widgets_values"].__setitem__("pingpong", 0),
    }
    for expected, damage in cases.items():
        wf = copy.deepcopy(base)
        damage(wf)
        problems = wc.ui_problems(wf, definitions)
        assert any(expected in p for p in problems), (expected, problems)


def test_recorded_definitions_name_their_pack_and_commit():
    packs = wc.recorded_packs()
    assert set(packs) == set(workflow_specs.PACKS)
    for folder, record in packs.items():
        assert record["repository"] == workflow_specs.INSTALL_HINTS[folder]
        assert len(record["commit"]) == 40
        assert set(record["nodes"]) == workflow_specs.PACKS[folder]
    assert packs["ComfyUI-AnimateDiff-Evolved"]["commit"] == "90fb1331201a4b29488089e4fbffc0d82cc6d0a9"


def test_recorded_animatediff_definition_matches_the_installed_pack(object_info):
    if not full_models.has_animatediff_evolved():
        pytest.skip("AnimateDiff-Evolved is not installed in this host")
    recorded = wc.recorded_packs()["ComfyUI-AnimateDiff-Evolved"]["nodes"]
    for node_type, entry in recorded.items():
        live = copy.deepcopy(object_info[node_type])
        entry = copy.deepcopy(entry)
        for e in (live, entry):
            e["input"]["required"]["model_name"][0] = []   # the folder listing differs per machine
        assert live == entry


@pytest.fixture(scope="module")
def reference_photo(comfy_server):
    comfy_server.input.mkdir(parents=True, exist_ok=True)
    path = comfy_server.input / workflow_settings.REFERENCE_PHOTO
    import cv2

    cv2.imwrite(str(path), cv2.resize(ff.photo_bgr("astronaut"), (128, 128)))
    return path


@pytest.mark.parametrize("name", NAMES)
def test_api_twin_passes_host_validation_except_missing_model_files(name, comfy_server, reference_photo):
    """Only the model files people download (absent here) stop the twin, each reported at its own node."""
    twin = workflow_graph.load(name)
    info = comfy_server.get("/object_info")
    skip_where_the_host_lacks_wan(name, info)
    missing = wc.missing_model_inputs(twin, info, comfy_server.models)
    assert missing, "the twin names model files this host does not have"
    status, body = comfy_server.post_prompt(twin)
    assert status == 400, f"expected only missing model files to stop the twin, got {status}: {body}"
    reported, other = wc.other_validation_errors(body, missing)
    assert other == [] and reported == set(missing), (other, reported, missing)


def test_defaults_match_the_method():
    for name in SD15_NAMES:
        twin = workflow_graph.load(name)
        for nid in workflow_graph.find(twin, "KSampler"):
            s = twin[nid]["inputs"]
            assert 4 <= s["steps"] <= 8 and 1.0 <= s["cfg"] <= 2.0
            assert (s["sampler_name"], s["scheduler"], s["denoise"]) == ("lcm", "sgm_uniform", 1.0)
        for nid in workflow_graph.find(twin, "EmptyLatentImage"):
            assert twin[nid]["inputs"] == {"width": 512, "height": 512, "batch_size": 16}
        for nid in workflow_graph.find(twin, "PV_ApplySIALateSteps"):
            assert (twin[nid]["inputs"]["strength"], twin[nid]["inputs"]["start_percent"]) == (1.0, 0.75)
        for nid in workflow_graph.find(twin, "ADE_AnimateDiffLoaderGen1"):
            assert twin[nid]["inputs"]["model_name"] == "AnimateLCM_sd15_t2v.ckpt"
            assert twin[nid]["inputs"]["beta_schedule"] == "lcm avg(sqrt_linear,linear)"
        for nid in workflow_graph.find(twin, "PV_TrainIdentity"):
            t = twin[nid]["inputs"]
            assert (t["frames"], t["width"], t["height"], t["sampling_steps"]) == (16, 512, 512, 4)
        assert workflow_graph.find(twin, "AnimateLCM LoRA"), name
        assert twin[workflow_graph.find(twin, "AnimateLCM LoRA")[0]]["inputs"] == {
            "model": ["1", 0], "lora_name": "AnimateLCM_sd15_t2v_lora.safetensors", "strength_model": 1.0} \
            or name == "04_generate_with_style_lora"


@pytest.mark.parametrize("name", NAMES)
def test_notes_say_where_every_model_file_goes_and_layout_is_tidy(name):
    wf = ui(name)
    notes = "\n".join(n["widgets_values"][0] for n in wf["nodes"] if n["type"] == "Note")
    twin = workflow_graph.load(name)
    for nid, node in twin.items():
        for (node_type, inp), (folder, _) in workflow_graph.FILE_INPUTS.items():
            if node["class_type"] == node_type:
                file = node["inputs"][inp]
                place = "ComfyUI/input/" if folder == "input" else f"ComfyUI/models/{folder}/"
                if node_type != "LoadImage":
                    assert place + file in notes, (node_type, file)
    for pack in {p for p, types in workflow_specs.PACKS.items() if types & workflow_graph.node_types(twin)}:
        assert pack in notes
    if workflow_graph.find(twin, "PV_LoadFaceAnalysis"):
        assert "ComfyUI/models/insightface/models/antelopev2/" in notes

    def box(n):
        return n["pos"][0], n["pos"][1] - 30, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1]

    def gbox(g):
        x, y, w, h = g["bounding"]
        return x, y, x + w, y + h

    def overlap(a, b):
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    def inside(a, b):
        return a[0] >= b[0] and a[1] >= b[1] and a[2] <= b[2] and a[3] <= b[3]

    nodes, groups = wf["nodes"], wf["groups"]
    assert groups
    for i, a in enumerate(nodes):
        assert not any(overlap(box(a), box(b)) for b in nodes[i + 1:]), a
        for g in groups:
            assert inside(box(a), gbox(g)) or not overlap(box(a), gbox(g)), (a.get("title"), g["title"])
    for i, a in enumerate(groups):
        assert not any(overlap(gbox(a), gbox(b)) for b in groups[i + 1:]), a["title"]


def upstream(wf, link, class_type):
    """The ids of the ``class_type`` nodes on the MODEL chain that ends at ``link`` (following input ``model``)."""
    found = []
    while workflow_graph.is_link(link):
        node = wf[link[0]]
        if node["class_type"] == class_type:
            found.append(link[0])
        link = node["inputs"].get("model")
    return found


def test_wan_workflow_is_core_wan_22s_two_expert_template_with_the_identity_on_the_low_noise_expert():
    name = "10_wan22_identity_and_style"
    twin = workflow_graph.load(name)
    first, second = sorted(workflow_graph.find(twin, "KSamplerAdvanced"),
                           key=lambda nid: twin[nid]["inputs"]["start_at_step"])
    a, b = twin[first]["inputs"], twin[second]["inputs"]
    for s in (a, b):
        assert (s["steps"], s["cfg"], s["sampler_name"], s["scheduler"]) == (20, 3.5, "euler", "simple")
    assert (a["add_noise"], a["start_at_step"], a["end_at_step"], a["return_with_leftover_noise"]) == (
        "enable", 0, 10, "enable")
    assert (b["add_noise"], b["start_at_step"], b["end_at_step"], b["return_with_leftover_noise"]) == (
        "disable", 10, 10000, "disable")
    assert b["latent_image"] == [first, 0]   # the low-noise pass continues the high-noise pass's latent
    experts = {}
    for sampler, inputs in ((first, a), (second, b)):
        (unet,) = upstream(twin, inputs["model"], "UNETLoader")
        experts[sampler] = twin[unet]["inputs"]["unet_name"]
        (shift,) = upstream(twin, inputs["model"], "ModelSamplingSD3")
        assert twin[shift]["inputs"]["shift"] == 8.0
        (lora,) = upstream(twin, inputs["model"], "LoraLoaderModelOnly")   # the style LoRA on both experts
        assert twin[lora]["inputs"]["lora_name"] == workflow_models.WAN_STYLE_LORA.name
    assert experts == {first: workflow_models.WAN22_HIGH_NOISE.name, second: workflow_models.WAN22_LOW_NOISE.name}
    assert upstream(twin, a["model"], "PV_ApplySIALateSteps") == []
    (apply,) = upstream(twin, b["model"], "PV_ApplySIALateSteps")
    assert (twin[apply]["inputs"]["strength"], twin[apply]["inputs"]["start_percent"]) == (1.0, 0.75)
    (clip,) = workflow_graph.find(twin, "CLIPLoader")
    assert twin[clip]["inputs"] == {"clip_name": workflow_models.UMT5.name, "type": "wan", "device": "default"}
    (vae,) = workflow_graph.find(twin, "VAELoader")
    assert twin[vae]["inputs"]["vae_name"] == workflow_models.WAN21_VAE.name
    (latent,) = workflow_graph.find(twin, "EmptyHunyuanLatentVideo")
    assert twin[latent]["inputs"] == {"width": 640, "height": 640, "length": 81, "batch_size": 1}
    (save,) = workflow_graph.find(twin, "SaveAnimatedWEBP")
    assert twin[save]["inputs"]["fps"] == 16.0   # Wan 2.1 / 2.2 A14B's frame rate
    assert not any(t.startswith("ADE_") for t in workflow_graph.node_types(twin))


def test_image_only_variant_drops_animatediff_and_rewires_the_model():
    for name in SD15_NAMES:
        twin = workflow_graph.load(name)
        plain = workflow_graph.without_animatediff(twin)
        assert not any(t.startswith("ADE_") for t in workflow_graph.node_types(plain))
        assert set(twin) - set(plain) == set(workflow_graph.find(twin, "ADE_AnimateDiffLoaderGen1"))
        lora = workflow_graph.find(twin, "AnimateLCM LoRA")[0]
        for node in plain.values():
            for value in node["inputs"].values():
                if workflow_graph.is_link(value):
                    assert value[0] in plain
        motion = set(workflow_graph.find(twin, "ADE_AnimateDiffLoaderGen1"))
        for nid in workflow_graph.find(plain, "PV_ApplySIALateSteps") + workflow_graph.find(plain, "PV_TrainIdentity"):
            if twin[nid]["inputs"]["model"][0] in motion:   # (workflow 08 stacks a second Apply on the first)
                assert plain[nid]["inputs"]["model"] == [lora, 0]
        assert workflow_graph.load(name) == twin  # the original is untouched


def test_configure_and_set_input_refuse_typos():
    wf = workflow_graph.load("02_generate_with_identity")
    workflow_graph.configure(wf, checkpoint="a.safetensors", frames=2, width=64, height=64, steps=4,
                             identity="alice")
    latent = wf[workflow_graph.find(wf, "EmptyLatentImage")[0]]["inputs"]
    assert latent == {"width": 64, "height": 64, "batch_size": 2}
    # the size in the latent's title follows (the main job prints titles while it runs)
    assert wf[workflow_graph.find(wf, "EmptyLatentImage")[0]]["_meta"]["title"] == "2 frames, 64x64"
    assert wf[workflow_graph.find(wf, "PV_LoadSIAAdapter")[0]]["inputs"]["adapter_name"] == "alice.safetensors"
    with pytest.raises(KeyError, match="unknown setting"):
        workflow_graph.configure(wf, frame=2)
    with pytest.raises(KeyError, match="no input 'step'"):
        workflow_graph.set_input(wf, "KSampler", "step", 2)
    with pytest.raises(ValueError, match="linked"):
        workflow_graph.set_input(wf, "KSampler", "model", 2)
    with pytest.raises(KeyError, match="no node"):
        workflow_graph.set_input(wf, "KSamplerAdvanced", "steps", 2)


def test_identity_prompt_node():
    from comfyui_personalvideo.nodes.identity_prompt import IdentityPrompt

    build = IdentityPrompt().build
    assert build("embedding:alice woman", "{identity} on a beach") == ("embedding:alice woman on a beach",)
    assert build("embedding:alice woman", "on a beach") == ("embedding:alice woman, on a beach",)
    assert build("embedding:alice woman", "") == ("embedding:alice woman",)
    spec = IdentityPrompt.INPUT_TYPES()["required"]
    assert spec["trigger_phrase"][1]["forceInput"] and "{identity}" in spec["text"][1]["default"]
