"""The wheel's package list (pyproject.toml) against the pack's folders: every package of the pack is either in
the wheel or named, with its reason, among those left out; and nothing in the wheel imports one left out."""
import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOT_PACK = {"tests", "bench", "tools", "scripts", "docs", "workflows", "web", "shared"}


def _pyproject():
    return (REPO / "pyproject.toml").read_text(encoding="utf-8")


def _in_wheel() -> set:
    block = re.search(r"^packages = \[(.*?)\]", _pyproject(), re.S | re.M).group(1)
    names = re.findall(r'"comfyui_personalvideo\.([\w.]+)"', block)
    return {n.split(".")[0] for n in names}


def _left_out() -> set:
    return set(re.findall(r"^#   (\w+) ", _pyproject(), re.M))


def _packages() -> set:
    return {p.name for p in REPO.iterdir() if p.is_dir() and (p / "__init__.py").is_file()
            and not p.name.startswith(".") and p.name not in NOT_PACK}


def test_every_package_is_in_the_wheel_or_said_why_not():
    wheel, out = _in_wheel(), _left_out()
    assert {"engine", "sia", "training", "evaluation"} <= wheel
    assert out == {"nodes", "regions", "noise_prior", "face_detail", "doctor"}
    assert _packages() == wheel | out and not wheel & out


def test_the_wheel_imports_nothing_it_leaves_out():
    out = _left_out()
    for package in _in_wheel():
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level >= 2:
                    first = (node.module or "").split(".")[0]
                    assert first not in out, f"{path.relative_to(REPO)} imports {node.module}"
