"""Checks of a UI-format workflow against node definitions (/object_info entries).

``ui_problems(workflow, definitions)`` lists everything the ComfyUI frontend would trip on or the
host would refuse: unknown node types, input or output names and socket types that differ from the
definition, links between sockets of different types, wrong widget counts (a seed input, or one
with control_after_generate, carries one extra value; an upload widget too), combo values not in
the list, numbers out of range. Combos listing files on the user's machine (model files, input
photos and videos) are checked for being file names only.
"""
from __future__ import annotations

import json
from pathlib import Path

from pv_tools import workflow_graph

DEFINITIONS_DIR = Path(__file__).resolve().parent / "data" / "node_definitions"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
UI_ONLY_TYPES = {"Note", "MarkdownNote"}
FILE_INPUTS = set(workflow_graph.FILE_INPUTS)
DICT_WIDGET_EXTRAS = {"videopreview", "choose video to upload"}


def recorded_packs() -> dict:
    """{pack folder: record} of tests/data/node_definitions."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(DEFINITIONS_DIR.glob("*.json"))}


def definitions_for(object_info: dict, packs: dict | None = None) -> dict:
    """The host's definitions, with every recorded third-party node type taken from its record."""
    merged = dict(object_info)
    for record in (packs or recorded_packs()).values():
        merged.update(record["nodes"])
    return merged


def _ordered_inputs(entry):
    """[(name, spec, required)] in the order the frontend builds a node's inputs."""
    out = []
    for group in ("required", "optional"):
        spec = entry.get("input", {}).get(group, {}) or {}
        order = entry.get("input_order", {}).get(group, list(spec))
        out += [(name, spec[name], group == "required") for name in order if name in spec]
    return out


def _kind(spec):
    head = spec[0]
    if isinstance(head, list):
        return "COMBO"
    return head


def _options(spec):
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def is_widget(spec) -> bool:
    return _kind(spec) in WIDGET_TYPES and not _options(spec).get("forceInput")


def split_inputs(entry):
    """(sockets [(name, type, required)], widgets [(name, spec)]) of a definition."""
    sockets, widgets = [], []
    for name, spec, required in _ordered_inputs(entry):
        if is_widget(spec):
            widgets.append((name, spec))
        else:
            sockets.append((name, _kind(spec), required))
    return sockets, widgets


def _has_control(name, spec):
    opts = _options(spec)
    return name in ("seed", "noise_seed") or bool(opts.get("control_after_generate"))


def _has_upload(widgets):
    return any(_options(spec).get("image_upload") or _options(spec).get("video_upload") for _, spec in widgets)


def value_problem(node_type, name, spec, value):
    """Why ``value`` is not valid for widget ``name`` (None when it is)."""
    kind, opts = _kind(spec), _options(spec)
    if (node_type, name) in FILE_INPUTS:
        return None if isinstance(value, str) and value.strip() else f"{name}: expected a file name, got {value!r}"
    if kind == "COMBO":
        choices = spec[0] if isinstance(spec[0], list) else opts.get("options", [])
        return None if value in choices else f"{name}: {value!r} is not one of {choices}"
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{name}: expected true/false, got {value!r}"
    if kind == "STRING":
        return None if isinstance(value, str) else f"{name}: expected text, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name}: expected a number, got {value!r}"
    if kind == "INT" and not float(value).is_integer():
        return f"{name}: expected a whole number, got {value!r}"
    if "min" in opts and value < opts["min"]:
        return f"{name}: {value} is below the minimum {opts['min']}"
    if "max" in opts and value > opts["max"]:
        return f"{name}: {value} is above the maximum {opts['max']}"
    return None


def _format_widgets(entry, values):
    """VideoHelperSuite's per-format widgets for the chosen format: {name: spec}."""
    fmt_spec = next((spec for name, spec, _ in _ordered_inputs(entry) if name == "format"), None)
    if not fmt_spec:
        return {}
    formats = _options(fmt_spec).get("formats", {})
    chosen = formats.get(values.get("format"), [])
    if isinstance(chosen, dict):   # Load Video's formats describe sizes, not widgets
        return {}
    return {w[0]: w[1:] for w in chosen}


def widget_problems(node, entry):
    node_type = node["type"]
    _, widgets = split_inputs(entry)
    values = node.get("widgets_values", [])
    problems = []
    if isinstance(values, dict):
        names = [n for n, _ in widgets]
        missing = [n for n in names if n not in values]
        if missing:
            problems.append(f"widgets_values lacks {missing}")
        extra_specs = _format_widgets(entry, values)
        for key, value in values.items():
            if key in DICT_WIDGET_EXTRAS:
                continue
            spec = dict(widgets).get(key) or extra_specs.get(key)
            if spec is None:
                problems.append(f"widgets_values has {key!r}, which is no widget of {node_type}")
            else:
                problems.append(value_problem(node_type, key, spec, value))
        return [p for p in problems if p]
    expected = []
    for name, spec in widgets:
        expected.append((name, spec))
        if _has_control(name, spec):
            expected.append((f"{name} (control after generate)", None))
    if _has_upload(widgets):
        expected.append(("upload", None))
    if len(values) != len(expected):
        return [f"{len(values)} widget values for {len(expected)} widgets {[n for n, _ in expected]}"]
    for (name, spec), value in zip(expected, values):
        if name == "upload":
            continue
        if spec is None:
            if value not in CONTROL_VALUES:
                problems.append(f"{name}: {value!r} is not one of {sorted(CONTROL_VALUES)}")
            continue
        problems.append(value_problem(node_type, name, spec, value))
    return [p for p in problems if p]


def ui_problems(workflow: dict, definitions: dict) -> list:
    problems = []
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {l[0]: l for l in workflow["links"]}
    for node in workflow["nodes"]:
        where = f"node {node['id']} ({node['type']})"
        if node["type"] in UI_ONLY_TYPES:
            if not (isinstance(node.get("widgets_values"), list) and len(node["widgets_values"]) == 1
                    and isinstance(node["widgets_values"][0], str)):
                problems.append(f"{where}: a note holds one text")
            continue
        entry = definitions.get(node["type"])
        if entry is None:
            problems.append(f"{where}: unknown node type")
            continue
        sockets, widgets = split_inputs(entry)
        socket_types = {name: kind for name, kind, _ in sockets}
        widget_specs = dict(widgets)
        linked = set()
        for slot, inp in enumerate(node.get("inputs", [])):
            name = inp["name"]
            if "widget" in inp:
                if inp["widget"].get("name") not in widget_specs:
                    problems.append(f"{where}: input {name} converts no widget of this node")
                    continue
                expected = _kind(widget_specs[inp["widget"]["name"]])
            elif name in socket_types:
                expected = socket_types[name]
            else:
                problems.append(f"{where}: no input named {name}")
                continue
            if inp.get("type") != expected:
                problems.append(f"{where}: input {name} has type {inp.get('type')}, the node declares {expected}")
            link = inp.get("link")
            if link is not None:
                linked.add(name)
                l = links.get(link)
                if l is None or l[3] != node["id"] or l[4] != slot:
                    problems.append(f"{where}: input {name} names link {link}, which does not end here")
        for name, kind, required in sockets:
            if required and name not in linked:
                problems.append(f"{where}: required input {name} is not connected")
        outputs = entry.get("output", [])
        names = entry.get("output_name") or outputs
        mine = node.get("outputs", [])
        if [o["type"] for o in mine] != list(outputs) or [o["name"] for o in mine] != list(names):
            problems.append(f"{where}: outputs {[(o['name'], o['type']) for o in mine]} differ from "
                            f"{list(zip(names, outputs))}")
        problems += [f"{where}: {p}" for p in widget_problems(node, entry)]
    for l in workflow["links"]:
        lid, origin, o_slot, target, t_slot, kind = l
        if origin not in nodes or target not in nodes:
            problems.append(f"link {lid}: joins a node that is not in the workflow")
            continue
        out = nodes[origin].get("outputs", [])
        inp = nodes[target].get("inputs", [])
        if o_slot >= len(out) or lid not in (out[o_slot].get("links") or []):
            problems.append(f"link {lid}: not listed on output {o_slot} of node {origin}")
            continue
        if t_slot >= len(inp):
            problems.append(f"link {lid}: node {target} has no input slot {t_slot}")
            continue
        types = {out[o_slot]["type"], inp[t_slot]["type"], kind}
        if len(types - {"*"}) > 1:
            problems.append(f"link {lid}: joins {out[o_slot]['type']} to {inp[t_slot]['type']} (link type {kind})")
    return problems


def api_from_ui(workflow: dict, definitions: dict) -> dict:
    """The prompt the frontend would queue for a UI workflow (used to check the twins stay in sync)."""
    links = {l[0]: l for l in workflow["links"]}
    api = {}
    for node in workflow["nodes"]:
        if node["type"] in UI_ONLY_TYPES:
            continue
        entry = definitions[node["type"]]
        _, widgets = split_inputs(entry)
        inputs = {}
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                l = links[inp["link"]]
                inputs[inp["name"]] = [str(l[1]), l[2]]
        values = node.get("widgets_values", [])
        if isinstance(values, dict):
            for key, value in values.items():
                if key not in DICT_WIDGET_EXTRAS and key not in inputs:
                    inputs[key] = value
        else:
            it = iter(values)
            for name, spec in widgets:
                value = next(it)
                if _has_control(name, spec):
                    next(it)
                if name not in inputs:
                    inputs[name] = value
        api[str(node["id"])] = {"inputs": inputs, "class_type": node["type"],
                                "_meta": {"title": node.get("title") or node["type"]}}
    return api


def missing_model_inputs(prompt: dict, object_info: dict, models_dir) -> dict:
    """{(node id, input): value} for the model files (and the face model pack) this host does not have;
    ``models_dir`` the host's models folder (the face pack is a folder there, not a file list of /object_info:
    another test of the session may have installed it)."""
    missing = {(nid, name): file for nid, name, file, _ in workflow_graph.missing_files(prompt, object_info)}
    for nid in workflow_graph.find(prompt, "PV_LoadFaceAnalysis"):
        pack = prompt[nid]["inputs"]["model_pack"]
        if not (Path(models_dir) / "insightface" / "models" / pack).is_dir():
            missing[(nid, "model_pack")] = pack
    return missing


def other_validation_errors(body: dict, missing: dict) -> tuple[set, list]:
    """(the missing-model inputs /prompt reported, every other error it reported)."""
    reported, other = set(), []
    for nid, node in body.get("node_errors", {}).items():
        for err in node.get("errors", []):
            key = (nid, err.get("extra_info", {}).get("input_name"))
            if key in missing and str(missing[key]) in str(err.get("details")):
                reported.add(key)
            else:
                other.append(f"node {nid} ({node.get('class_type')}): {err.get('type')}: {err.get('details')}")
    if not body.get("node_errors") and body.get("error"):
        other.append(str(body["error"]))
    return reported, other
