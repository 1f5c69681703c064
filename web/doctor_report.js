// Shows the report of the "PersonalVideo Doctor" node on the node itself, in a read-only text box.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const NODE_ID = "PV_Doctor";
const WIDGET = "report_text";

app.registerExtension({
    name: "PersonalVideo.DoctorReport",
    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (nodeData.name !== NODE_ID) {
            return;
        }
        const onNodeCreated = nodeType.prototype.onNodeCreated;
        nodeType.prototype.onNodeCreated = function () {
            const result = onNodeCreated?.apply(this, arguments);
            const widget = ComfyWidgets["STRING"](this, WIDGET, ["STRING", { multiline: true }], app).widget;
            const box = widget.inputEl ?? widget.element;  // the textarea (both frontends set inputEl)
            if (box) {
                box.readOnly = true;
                box.placeholder = "Queue the prompt to check this install.";
            }
            widget.serialize = false;  // not an input: keeps the saved workflow's widget values unchanged
            this.setSize([Math.max(this.size[0], 560), Math.max(this.size[1], 360)]);
            return result;
        };
        const onExecuted = nodeType.prototype.onExecuted;
        nodeType.prototype.onExecuted = function (message) {
            onExecuted?.apply(this, arguments);
            const widget = this.widgets?.find((w) => w.name === WIDGET);
            if (widget && message?.text) {
                widget.value = Array.isArray(message.text) ? message.text.join("\n") : String(message.text);
            }
        };
    },
});
