"""A workflow described in Python (nodes, links, groups, notes), written as a ComfyUI UI file and its API twin.

UI files (``workflows/NN_name.json``) are what people load in the ComfyUI frontend: nodes with
positions, sockets, ``widgets_values``, links, groups and Note nodes. API twins
(``workflows/api/NN_name.json``) are what ``POST /prompt`` takes: ``{id: {class_type, inputs}}``,
the conversion the frontend does when it queues a prompt (Note nodes dropped, links as
``[origin id, slot]``, widget values by name, no control_after_generate values).

Every node type comes from ``tools.workflow_specs``; the workflows themselves are in ``tools.workflow_build``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .workflow_models import BY_NAME
from .workflow_settings import NOTE_BGCOLOR, NOTE_COLOR
from .workflow_specs import NO_DOWNLOAD, NODE_SPECS, SEED_WIDGETS


def model_file(node, widget: str, folder: str):
    """The ``ModelFile`` a loader's widget names (``tools.workflow_models``); a file without an entry is an error."""
    name = node.widgets.get(widget)
    entry = BY_NAME.get(name)
    if entry is None or entry.directory != folder:
        raise KeyError(f"{node.type} #{node.id}: {widget} names {name!r}, which tools/workflow_models.py does not "
                       f"list for models/{folder}: add its ModelFile (name, folder, download URL)")
    return entry


# ---------------------------------------------------------------- graph description
@dataclass
class Node:
    id: int
    type: str
    pos: tuple
    size: tuple
    widgets: dict
    title: str | None = None
    color: str | None = None
    bgcolor: str | None = None
    links_in: dict = field(default_factory=dict)   # input name -> (origin node, origin slot)

    @property
    def spec(self):
        return NODE_SPECS[self.type]


class Graph:
    def __init__(self, name: str, title: str):
        self.name, self.title = name, title
        self.nodes: list[Node] = []
        self.groups: list[dict] = []

    def add(self, type_, pos, size, title=None, **widgets) -> Node:
        spec = NODE_SPECS[type_]
        unknown = set(widgets) - set(spec["widgets"])
        if unknown:
            raise KeyError(f"{type_} has no widget(s) {sorted(unknown)}")
        node = Node(len(self.nodes) + 1, type_, tuple(pos), tuple(size), widgets, title)
        self.nodes.append(node)
        return node

    def note(self, pos, size, text, title="Note") -> Node:
        node = self.add("Note", pos, size, title=title, text=text)
        node.color, node.bgcolor = NOTE_COLOR, NOTE_BGCOLOR
        return node

    def link(self, origin: Node, origin_output: str, target: Node, target_input: str) -> None:
        names = [n for n, _ in origin.spec["outputs"]]
        if origin_output not in names:
            raise KeyError(f"{origin.type} has no output {origin_output}")
        sockets = [n for n, _ in target.spec["sockets"] + target.spec["optional_sockets"]]
        if target_input not in sockets and target_input not in target.spec["widgets"]:
            raise KeyError(f"{target.type} has no input {target_input}")
        target.links_in[target_input] = (origin, names.index(origin_output))

    def group(self, title, nodes, color, pad=30):
        xs = [n.pos[0] for n in nodes] + [n.pos[0] + n.size[0] for n in nodes]
        ys = [n.pos[1] for n in nodes] + [n.pos[1] + n.size[1] for n in nodes]
        self.groups.append({"title": title, "bounding": [min(xs) - pad, min(ys) - pad - 40,
                                                          max(xs) - min(xs) + 2 * pad, max(ys) - min(ys) + 2 * pad + 40],
                            "color": color, "font_size": 24, "flags": {}})

    # ---------------- conversion
    def _links(self):
        """[(link id, origin node, origin slot, target node, target input name, type)] in a stable order."""
        out = []
        for target in self.nodes:
            for name in self._input_order(target):
                if name in target.links_in:
                    origin, slot = target.links_in[name]
                    out.append([len(out) + 1, origin, slot, target, name, origin.spec["outputs"][slot][1]])
        return out

    @staticmethod
    def _linked_optional_sockets(node):
        return [(n, t) for n, t in node.spec["optional_sockets"] if n in node.links_in]

    @classmethod
    def _input_order(cls, node):
        return ([n for n, _ in node.spec["sockets"] + cls._linked_optional_sockets(node)]
                + [w for w in node.spec["widgets"] if w in node.links_in])

    def _order(self):
        """Topological order (what the frontend stores as each node's ``order``)."""
        done, order = set(), []

        def visit(node):
            if node.id in done:
                return
            for origin, _ in node.links_in.values():
                visit(origin)
            done.add(node.id)
            order.append(node.id)

        for node in self.nodes:
            visit(node)
        return {nid: i for i, nid in enumerate(order)}

    def widget_value(self, node, name):
        if name in node.widgets:
            return node.widgets[name]
        raise KeyError(f"{node.type} #{node.id}: widget {name} has no value")

    def to_ui(self) -> dict:
        links = self._links()
        order = self._order()
        nodes = []
        for node in self.nodes:
            spec = node.spec
            inputs = []
            for name, type_ in spec["sockets"] + self._linked_optional_sockets(node):
                link = next((l[0] for l in links if l[3] is node and l[4] == name), None)
                inputs.append({"name": name, "type": type_, "link": link})
            for name in spec["widgets"]:
                if name in node.links_in:
                    link = next(l for l in links if l[3] is node and l[4] == name)
                    inputs.append({"name": name, "type": link[5], "widget": {"name": name}, "link": link[0]})
            outputs = []
            for slot, (name, type_) in enumerate(spec["outputs"]):
                ids = [l[0] for l in links if l[1] is node and l[2] == slot]
                outputs.append({"name": name, "type": type_, "links": ids or None, "slot_index": slot})
            entry = {"id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size), "flags": {},
                     "order": order[node.id], "mode": 0, "inputs": inputs, "outputs": outputs,
                     "properties": self._properties(node),
                     "widgets_values": self._ui_widgets(node)}
            if node.title:
                entry["title"] = node.title
            if node.color:
                entry["color"], entry["bgcolor"] = node.color, node.bgcolor
            nodes.append(entry)
        return {"last_node_id": len(self.nodes), "last_link_id": len(links), "nodes": nodes,
                "links": [[l[0], l[1].id, l[2], l[3].id, self._target_slot(l[3], l[4]), l[5]] for l in links],
                "groups": self.groups, "config": {},
                "extra": {"ds": {"scale": 0.75, "offset": [60, 80]}, "info": {"name": self.title}},
                "version": 0.4}

    @staticmethod
    def _properties(node) -> dict:
        """What the frontend keeps per node; a loader's ``models`` lists the files its widgets name, with where to
        download each and the folder it goes in (the frontend offers them when they are missing)."""
        if node.spec["ui_only"]:
            return {"text": ""}
        properties = {"Node name for S&R": node.type}
        models = [model_file(node, widget, folder).metadata() for widget, folder in node.spec["model_widgets"].items()
                  if folder not in NO_DOWNLOAD]
        if models:
            properties["models"] = models
        return properties

    def _target_slot(self, node, name):
        return self._input_order(node).index(name)

    def _ui_widgets(self, node):
        spec = node.spec
        if spec["dict_widgets"]:
            values = {name: self.widget_value(node, name) for name in spec["widgets"]}
            values["videopreview"] = {"hidden": False, "paused": False, "params": {}}
            return values
        values = []
        for name in spec["widgets"]:
            values.append(self.widget_value(node, name))
            if name in SEED_WIDGETS:
                values.append("fixed")
        if spec["extra_ui_widgets"]:
            values += ["image"]  # the upload button's stored value
        return values

    def to_api(self) -> dict:
        api = {}
        for node in self.nodes:
            if node.spec["ui_only"]:
                continue
            inputs = {}
            for name in self._input_order(node):
                if name in node.links_in:
                    origin, slot = node.links_in[name]
                    inputs[name] = [str(origin.id), slot]
            for name in node.spec["widgets"]:
                if name not in node.links_in:
                    inputs[name] = self.widget_value(node, name)
            api[str(node.id)] = {"inputs": inputs, "class_type": node.type,
                                 "_meta": {"title": node.title or node.type}}
        return api

