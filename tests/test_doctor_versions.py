"""The doctor's dependency line: installed versions against the tested ranges, and advice outside them.

Old and new versions are real install states: a ``.dist-info`` folder put first on sys.path is what
importlib.metadata (and pip) then report for that distribution.
"""
import re
import sys
from pathlib import Path

import pytest

import host
from comfyui_personalvideo import doctor
from comfyui_personalvideo.doctor import dependency_versions as dv
from comfyui_personalvideo.doctor import face_models, runner
from comfyui_personalvideo.doctor import tested_versions as tv

REPO = Path(__file__).resolve().parent.parent


def context():
    return doctor.DoctorContext(comfyui_root=str(host.host_root()), in_server=True)


@pytest.mark.parametrize("version, expected", [
    ("2.4.0", tv.INSIDE), ("2.4.1+cu121", tv.INSIDE), ("2.15.3", tv.INSIDE), ("2.16.0", tv.NEWER),
    ("2.3.1", tv.OLDER), ("3.0", tv.NEWER), ("2.10", tv.INSIDE),
])
def test_place_in_a_two_part_range(version, expected):
    assert tv.place(version, "2.4", "2.15") == expected


def test_place_handles_release_candidates_long_versions_and_one_part_ends():
    assert tv.place("1.26.0rc1", "1.26", "2.4") == tv.INSIDE
    assert tv.place("1.25.2", "1.26", "2.4") == tv.OLDER
    assert tv.place("4.12.0.88", "4.8", "5") == tv.INSIDE and tv.place("5.0.0.93", "4.8", "5") == tv.INSIDE
    assert tv.place("6.0.0", "4.8", "5") == tv.NEWER and tv.place("4.7.0.72", "4.8", "5") == tv.OLDER
    assert tv.place("0.7.3", "0.7.3", "2.1") == tv.INSIDE and tv.place("0.7.2", "0.7.3", "2.1") == tv.OLDER
    with pytest.raises(ValueError):
        tv.release("unknown")


def test_every_requirement_has_a_tested_range():
    names = []
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.append(re.match(r"[A-Za-z0-9_.-]+", line).group(0).lower())
    covered = {d for t in tv.TESTED for d in t.distributions}
    assert names and set(names) <= covered
    for name in ("torch", "onnxruntime", "onnxruntime-gpu"):  # not in requirements.txt, still checked
        assert name in covered


def test_this_environment_is_inside_the_tested_ranges():
    """What the lanes install is what the table says is tested."""
    result = dv.check_dependency_versions(context())
    assert result.status == doctor.OK, result.message + "\n" + result.fix
    from importlib import metadata

    assert f"numpy {metadata.version('numpy')}: tested" in result.message
    assert f"insightface {metadata.version('insightface')}: tested" in result.message
    assert result.message.startswith(f"Python {'.'.join(map(str, sys.version_info[:3]))}: tested")


def _shadow(tmp_path, monkeypatch, name, version):
    """Install-state: ``name`` ``version`` found first on sys.path."""
    info = tmp_path / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_an_older_dependency_is_a_warning_with_its_known_trouble(tmp_path, monkeypatch):
    _shadow(tmp_path, monkeypatch, "onnxruntime-gpu", "1.16.3")
    result = dv.check_dependency_versions(context())
    assert result.status == doctor.WARN
    assert "onnxruntime-gpu 1.16.3: OLDER than tested (1.17 to 1.32.x)" in result.message
    assert "onnxruntime: onnxruntime-gpu before 1.17 is built for CUDA 11" in result.fix
    assert result.details["onnxruntime"]["place"] == tv.OLDER


def test_a_newer_dependency_is_a_warning_that_says_what_to_go_back_to(tmp_path, monkeypatch):
    _shadow(tmp_path, monkeypatch, "numpy", "3.0.0")
    result = dv.check_dependency_versions(context())
    numpy = next(t for t in tv.TESTED if t.name == "numpy")
    assert result.status == doctor.WARN
    assert f"numpy 3.0.0: newer than tested ({tv.range_text(numpy)})" in result.message, result.message
    assert f"go back to numpy {numpy.newest}" in result.fix


def test_a_missing_dependency_fails_with_the_install_command(monkeypatch):
    missing = tv.Tested("facepack-test-dependency", ("facepack-test-dependency",), "1.0", "1.2",
                        "facepack-test-dependency")
    monkeypatch.setattr(dv, "TESTED", dv.TESTED + (missing,))
    result = dv.check_dependency_versions(context())
    assert result.status == doctor.FAIL
    assert "facepack-test-dependency: not installed (1.0 to 1.2.x)" in result.message
    assert "python -m pip install facepack-test-dependency" in result.fix


def test_the_versions_line_is_part_of_the_report():
    names = [name for name, _ in runner.CHECKS]
    assert dv.NAME in names and names.index(dv.NAME) < names.index(face_models.INSIGHTFACE)


def test_insightface_built_for_numpy_1_gets_the_numpy_advice():
    said = ("ValueError: numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C "
            "header, got 88 from PyObject")
    hint = face_models.import_hint(said)
    assert "compiled against numpy 1.x" in hint and "insightface 2.x" in hint and "numpy<2" in hint
    assert "onnxruntime" in face_models.import_hint("ImportError: InsightFace requires ONNX Runtime ... onnxruntime")
    assert "pip install insightface" in face_models.import_hint("ModuleNotFoundError: No module named 'insightface'")
