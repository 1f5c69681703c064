// Injected into the ComfyUI frontend page (2024 web/ frontend and the modern comfyui-frontend-package)
// by tools/comfy_frontend.py. Loads a UI workflow the way the UI does (app.loadGraphData) and reports
// what an artist would see go wrong: missing node types, widgets that did not take the saved values,
// values outside a widget's range or combo list, links the frontend dropped or finds incompatible.
window.__pv = (() => {
  const MODEL_FILE = /\.(safetensors|ckpt|pt|pth|bin|onnx|sft|gguf)$/i;
  const INPUT_FILE = /\.(png|jpe?g|webp|gif|bmp|mp4|webm|mov|mkv|avi)$/i;

  // key order does not matter (VideoHelperSuite saves widgets_values as an object)
  const canon = (x) => Array.isArray(x) ? x.map(canon)
    : x && typeof x === "object" ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, canon(x[k])])) : x;
  const same = (a, b) => JSON.stringify(canon(a)) === JSON.stringify(canon(b));

  // What the frontend would save for the node's widgets, comparable to the file's widgets_values.
  // The 2024 frontend keeps a widget for a forceInput input and saves its value; modern frontends
  // have none there and write no value for it: leave those out (a node with no widgets saves none).
  // The node's widget values as the frontend would save them now. Left out: socket-only (forceInput)
  // widgets, and, in a pack's dict-form values (VideoHelperSuite), widgets that are never sent to the
  // backend (options.serialize false, e.g. its "choose video to upload" button) and that the file did
  // not hold: the frontend adds those by itself.
  function savedAgain(node, saved) {
    const values = node.serialize().widgets_values;
    if (values && typeof values === "object" && !Array.isArray(values)) {
      const out = { ...values };
      for (const w of node.widgets || []) {
        if (w.options?.serialize === false && !(saved && w.name in saved)) delete out[w.name];
      }
      return out;
    }
    if (!Array.isArray(values)) return values ?? [];
    return values.filter((_, i) => !node.widgets?.[i]?.options?.forceInput);
  }

  function graphNodes(graphData) {
    const nodes = [...(graphData.nodes || [])];
    for (const sg of graphData.definitions?.subgraphs || []) nodes.push(...(sg.nodes || []));
    return nodes;
  }

  function missingTypes(graphData) {
    const missing = graphNodes(graphData).map((n) => n.type).filter((t) => !(t in LiteGraph.registered_node_types));
    return [...new Set(missing)];
  }

  function comboValues(widget, node) {
    const v = widget.options?.values;
    if (typeof v === "function") return v(widget, node);
    return v;
  }

  // One widget's value against its own definition (range, list, type).
  function checkWidget(node, widget, problems, files) {
    const type = widget.type === "converted-widget" ? widget.origType : widget.type;
    const where = `node ${node.id} (${node.type}) widget '${widget.name}'`;
    const value = widget.value;
    if (type === "number") {
      const { min, max } = widget.options || {};
      if (typeof value !== "number" || !Number.isFinite(value)) problems.push(`${where}: ${JSON.stringify(value)} is not a number`);
      else if ((min != null && value < min) || (max != null && value > max))
        problems.push(`${where}: ${value} outside [${min}, ${max}]`);
    } else if (type === "combo") {
      const values = comboValues(widget, node);
      const list = Array.isArray(values) ? values : values ? Object.keys(values) : [];
      if (!list.includes(value)) {
        if (typeof value === "string" && MODEL_FILE.test(value)) files.models.push({ node: node.id, widget: widget.name, value });
        else if (typeof value === "string" && INPUT_FILE.test(value)) files.inputs.push({ node: node.id, widget: widget.name, value });
        else problems.push(`${where}: ${JSON.stringify(value)} is not one of ${JSON.stringify(list.slice(0, 12))}`);
      }
    } else if (type === "toggle") {
      if (typeof value !== "boolean") problems.push(`${where}: ${JSON.stringify(value)} is not a boolean`);
    } else if (type === "text" || type === "customtext" || type === "string") {
      if (typeof value !== "string") problems.push(`${where}: ${JSON.stringify(value)} is not text`);
    }
  }

  function linkList(graph) {
    const links = graph.links;
    if (!links) return [];
    if (links instanceof Map) return [...links.values()];
    return Object.values(links).filter(Boolean);
  }

  function checkLinks(graphData, problems) {
    const graph = app.graph;
    const loaded = linkList(graph);
    const saved = graphData.links || [];
    if (loaded.length !== saved.length)
      problems.push(`the frontend kept ${loaded.length} of the ${saved.length} links`);
    for (const link of loaded) {
      const origin = graph.getNodeById(link.origin_id);
      const target = graph.getNodeById(link.target_id);
      const out = origin?.outputs?.[link.origin_slot];
      const inp = target?.inputs?.[link.target_slot];
      if (!out || !inp) {
        problems.push(`link ${link.id} points at a slot that does not exist`);
        continue;
      }
      if (!LiteGraph.isValidConnection(out.type, inp.type))
        problems.push(`link ${link.id}: ${origin.type}.${out.name} (${out.type}) -> ${target.type}.${inp.name} (${inp.type})`);
    }
  }

  // Before/after of the page's visible dialogs and toasts, to name the ones a load opened.
  function overlays() {
    const sel = [".p-dialog", ".p-toast-message", ".comfy-modal", ".comfy-missing-nodes"].join(",");
    return [...document.querySelectorAll(sel)]
      .filter((el) => el.offsetParent !== null || getComputedStyle(el).display !== "none")
      .filter((el) => el.getBoundingClientRect().width > 0)
      .map((el) => el.innerText.trim().replace(/\s+/g, " ").slice(0, 400))
      .filter(Boolean);
  }

  async function load(graphData, name) {
    const missing = missingTypes(graphData);
    closeOverlays();  // what an earlier load left open
    const before = new Set(overlays());
    const problems = [];
    const files = { models: [], inputs: [] };
    // app.loadGraphData is what the file-open / drop path calls; the modern frontend takes the
    // file name as its 4th argument (the tab title), the 2024 one ignores it.
    await app.loadGraphData(graphData, true, true, name);
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));

    for (const saved of graphData.nodes || []) {  // top-level nodes (subgraph contents are not in app.graph)
      const node = app.graph.getNodeById(saved.id);
      if (!node) {
        problems.push(`node ${saved.id} (${saved.type}) was not created`);
        continue;
      }
      if (node.type !== saved.type) problems.push(`node ${saved.id}: type ${saved.type} became ${node.type}`);
      const widgets = node.widgets || [];
      if (saved.widgets_values !== undefined) {
        const again = savedAgain(node, saved.widgets_values);
        if (!same(again, saved.widgets_values))
          problems.push(`node ${saved.id} (${saved.type}) widgets: saved ${JSON.stringify(saved.widgets_values)}` +
                        ` but the frontend holds ${JSON.stringify(again)} (widgets ${JSON.stringify(widgets.map((w) => w.name))})`);
      }
      const before = files.models.length;
      for (const widget of widgets) checkWidget(node, widget, problems, files);
      // newer frontends mark a loader whose model file is missing as failed: that is the missing file, reported
      // in `files`; any other mark is a problem
      if (node.has_errors && files.models.length === before)
        problems.push(`node ${saved.id} (${saved.type}) is marked as failed`);
    }
    checkLinks(graphData, problems);
    const opened = overlays().filter((t) => !before.has(t));
    return { missing, problems, files, overlays: opened, nodes: app.graph._nodes.length };
  }

  async function toPrompt() {
    const p = await app.graphToPrompt();
    return p.output;
  }

  // Whole graph (nodes and groups) in view, for screenshots; `inset` keeps it clear of the menus
  // drawn over the canvas (modern frontend: side bar on the left, top bar, zoom controls).
  function fit(inset = { left: 80, top: 90, right: 30, bottom: 70 }) {
    const canvas = app.canvas;
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    const add = (x, y, w, h) => {
      x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + w); y1 = Math.max(y1, y + h);
    };
    const titleHeight = LiteGraph.NODE_TITLE_HEIGHT || 30;
    for (const n of app.graph._nodes) add(n.pos[0], n.pos[1] - titleHeight, n.size[0], n.size[1] + titleHeight);
    for (const g of app.graph._groups || app.graph.groups || []) {
      const b = g._bounding || g.bounding || [g.pos[0], g.pos[1], g.size[0], g.size[1]];
      add(b[0], b[1], b[2], b[3]);
    }
    const rect = canvas.canvas.getBoundingClientRect();
    const free = { w: rect.width - inset.left - inset.right, h: rect.height - inset.top - inset.bottom };
    const scale = Math.min(free.w / (x1 - x0), free.h / (y1 - y0), 1.0);
    canvas.ds.scale = scale;
    // screen = (graph + offset) * scale: centre the graph in the free area
    canvas.ds.offset[0] = (inset.left + free.w / 2) / scale - (x0 + x1) / 2;
    canvas.ds.offset[1] = (inset.top + free.h / 2) / scale - (y0 + y1) / 2;
    canvas.setDirty(true, true);
    canvas.draw(true, true);
    return scale;
  }

  function closeOverlays() {
    for (const b of document.querySelectorAll(".p-dialog-close-button, .p-dialog-header-close, .p-toast-close-button"))
      b.click();
    for (const m of document.querySelectorAll(".comfy-modal")) m.style.display = "none";
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  async function until(probe, timeoutMs = 20000) {
    const t0 = Date.now();
    while (Date.now() - t0 < timeoutMs) {
      const value = probe();
      if (value) return value;
      await sleep(200);
    }
    return null;
  }

  // The Templates browser (Workflow > Browse Templates): open it, pick the category of custom node pack
  // `moduleName`, and report what it shows: whether the category is listed, the text of the dialog, the
  // thumbnails the page fetched from the pack's templates ([{src, status}]) and how many pictures the dialog
  // shows (every picture is scrolled into view first: the frontend loads them lazily).
  async function templates(moduleName) {
    closeOverlays();
    performance.setResourceTimingBufferSize(10000);  // the page's start-up fills the default 250 entries
    performance.clearResourceTimings();
    await app.extensionManager.command.execute("Comfy.BrowseTemplates");
    const leaf = (el) => el.children.length === 0 && el.textContent.trim() === moduleName;
    const entry = await until(() => [...document.querySelectorAll("li, a, button, span, div")].find(leaf));
    if (!entry) return { found: false, text: document.body.innerText.slice(0, 3000), thumbnails: [], pictures: 0 };
    (entry.closest("li, button, a, [role=option]") || entry).click();
    const dialog = entry.closest("[role=dialog], .p-dialog") || document.body;
    const prefix = `/workflow_templates/${moduleName}/`;
    const fetched = () => performance.getEntriesByType("resource")
      .filter((e) => decodeURIComponent(e.name).includes(prefix) && /\.jpg(\?|$)/.test(e.name));
    await until(() => fetched().length);
    // scroll the dialog's lists down to their ends: the cards further down load their pictures when shown
    const seen = new Set(), texts = new Set();
    const look = () => {
      texts.add(dialog.innerText);
      for (const i of dialog.querySelectorAll("img")) if (i.complete && i.naturalWidth > 0) seen.add(i.src);
    };
    for (let step = 0; step < 40; step++) {
      await sleep(400);
      look();
      const lists = [...dialog.querySelectorAll("*")].filter((el) => el.scrollHeight > el.clientHeight + 4
        && /(auto|scroll)/.test(getComputedStyle(el).overflowY) && el.scrollTop + el.clientHeight < el.scrollHeight - 4);
      if (!lists.length) break;
      for (const el of lists) el.scrollTop += el.clientHeight * 0.8;
    }
    await sleep(800);
    look();
    return {
      found: true,
      text: [...texts].join("\n"),
      thumbnails: fetched().map((e) => ({ src: decodeURIComponent(e.name), status: e.responseStatus })),
      pictures: seen.size,
    };
  }

  // The downloads the frontend offers for the missing models of the loaded workflow:
  // [{name, url, enabled}] (the URL a Download button opens, caught instead of followed), plus the model
  // names it lists. The 2025 frontend shows a "Missing Models" dialog (a Download button per file, the URL in
  // its title); newer ones list the files in the workflow's issues panel ("View details").
  async function downloadOffers() {
    const caught = [];
    const click = HTMLAnchorElement.prototype.click, open = window.open;
    HTMLAnchorElement.prototype.click = function () { caught.push(this.href); };
    window.open = (u) => { caught.push(String(u)); return null; };
    try {
      const dialog = await until(() => document.querySelector(".comfy-missing-models")
        || [...document.querySelectorAll("button")].find((b) => b.innerText.trim() === "View details"), 15000);
      if (!dialog) return { listed: [], offers: [] };
      if (dialog.classList.contains("comfy-missing-models")) {
        const rows = [...dialog.querySelectorAll("li")].map((li) => {
          const label = li.querySelector("span[title]");
          const button = [...li.querySelectorAll("button")].find((b) => /^Download/.test(b.getAttribute("aria-label") || ""));
          const name = (label?.textContent || "").split(" / ").pop().trim();
          return { name, url: button?.title || label?.title || "", enabled: !!button && !button.disabled,
                   note: li.querySelector(".p-message")?.innerText || "" };
        });
        return { listed: rows.map((r) => r.name), offers: rows };
      }
      dialog.click();
      const group = await until(() => document.querySelector('[data-testid="error-group-missing-model"]'), 10000);
      if (!group) return { listed: [], offers: [] };
      const listed = [...group.querySelectorAll("button[title]")].map((b) => b.title).filter((t) => !t.startsWith("Copy "));
      const offers = [];
      for (const button of group.querySelectorAll('[data-testid="missing-model-download"]')) {
        const before = caught.length;
        button.click();
        await until(() => caught.length > before, 3000);
        offers.push({ name: (button.getAttribute("aria-label") || "").replace(/^Download /, ""),
                      url: caught[before] || "", enabled: !button.disabled, note: "" });
      }
      return { listed, offers };
    } finally {
      HTMLAnchorElement.prototype.click = click;
      window.open = open;
    }
  }

  return { missingTypes, load, toPrompt, fit, overlays, closeOverlays, templates, downloadOffers };
})();
