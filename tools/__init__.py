"""Command-line tooling of the project (not imported by the node pack).

- ``comfy_process``: start a headless ComfyUI and talk to it over HTTP.
- ``workflow_build``: the example workflows, described once in Python, written as UI and API files.
- ``workflow_graph``: load an API workflow, set its inputs, derive variants (for scripts and tests).
- ``record_node_definitions``: record third-party packs' node definitions from their real code.
"""
