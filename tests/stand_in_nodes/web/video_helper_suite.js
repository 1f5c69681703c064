// TEST DOUBLE: the frontend side of the VideoHelperSuite stand-in nodes (tests/stand_in_nodes).
//
// The real pack ships a frontend extension that changes how its nodes keep their widgets; without
// it a workflow saved with the real pack does not load as it would for a user who has the pack.
// This reproduces the three behaviours the example workflows rely on, for stand-in nodes only
// (category "test stand-ins/..."), so the browser check loads them as the real pack would:
//  - widgets_values saved as an object {widget name: value} and restored by name;
//  - Video Combine's per-format widgets (pix_fmt, crf, ...), taken from the `formats` option of its
//    `format` input and placed right after it whenever the format changes;
//  - the video preview widget ("videopreview"), saved with the node but never sent to the backend;
//  - Load Video's upload button ("choose video to upload", value "image"), never sent to the backend,
//    which the real pack adds by itself to a node whose saved values lack it.
import { app } from "../../scripts/app.js";

const STAND_IN_CATEGORY = "test stand-ins/";
const PREVIEW = "videopreview";

function chain(object, name, callback) {
  const original = object[name];
  object[name] = function (...args) {
    const r = original?.apply(this, args);
    return callback.apply(this, args) ?? r;
  };
}

function formatWidget(node, [name, type, options = {}]) {
  // [name, TYPE or [choices], {default, min, max, step}] as in the `formats` option
  if (Array.isArray(type))
    return node.addWidget("combo", name, options.default ?? type[0], () => {}, { values: type });
  if (type === "BOOLEAN") return node.addWidget("toggle", name, options.default ?? false, () => {}, {});
  if (type === "INT" || type === "FLOAT") {
    const step = options.step ?? 1;
    return node.addWidget("number", name, options.default ?? 0, () => {}, {
      min: options.min, max: options.max, step: step * 10, precision: type === "INT" ? 0 : 2,
      round: type === "INT" ? 1 : undefined,
    });
  }
  return node.addWidget("text", name, options.default ?? "", () => {}, {});
}

function addFormatWidgets(node, formats) {
  const format = node.widgets?.find((w) => w.name === "format");
  if (!format || !formats) return;
  let added = [];
  const rebuild = (value) => {
    node.widgets = node.widgets.filter((w) => !added.includes(w));
    const specs = Array.isArray(formats[value]) ? formats[value] : [];
    added = specs.map((spec) => {
      const widget = formatWidget(node, spec);
      node.widgets.splice(node.widgets.indexOf(widget), 1);
      return widget;
    });
    node.widgets.splice(node.widgets.indexOf(format) + 1, 0, ...added);
  };
  chain(format, "callback", rebuild);
  rebuild(format.value);
}

function addPreview(node) {
  node.addCustomWidget({
    name: PREVIEW, type: "stand-in-preview", value: { hidden: false, paused: false, params: {} },
    options: { serialize: false }, draw() {}, computeSize: () => [0, -4],
  });
}

function addUploadButton(node) {
  const button = node.addWidget("button", "choose video to upload", "image", () => {});
  button.options.serialize = false;
}

app.registerExtension({
  name: "personalvideo.tests.stand_in.video_helper_suite",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith("VHS_") || !nodeData.category?.startsWith(STAND_IN_CATEGORY)) return;
    const formats = nodeData.input?.required?.format?.[1]?.formats;
    chain(nodeType.prototype, "onNodeCreated", function () {
      if (nodeData.name === "VHS_VideoCombine") addFormatWidgets(this, formats);
      if (nodeData.name === "VHS_LoadVideo") addUploadButton(this);
      addPreview(this);
    });
    chain(nodeType.prototype, "onConfigure", function (info) {
      const saved = info.widgets_values;
      if (!saved || Array.isArray(saved) || typeof saved !== "object" || !this.widgets) return;
      const format = this.widgets.find((w) => w.name === "format");
      if (format && "format" in saved) {  // first, so the format's own widgets exist
        format.value = saved.format;
        format.callback?.(format.value);
      }
      for (const w of this.widgets) if (w.name in saved) w.value = saved[w.name];
    });
    chain(nodeType.prototype, "onSerialize", function (info) {
      // plain data (newer frontends hold widget values in reactive proxies, which the workflow store cannot clone)
      info.widgets_values = JSON.parse(JSON.stringify(Object.fromEntries((this.widgets || []).map((w) => [w.name, w.value]))));
    });
  },
});
