"""Each runtime dependency's installed version against the range the pack is tested with.

Read from the installed distributions' metadata (nothing is imported, so a
package that fails to import still shows its version; the import itself is the
business of the insightface / onnxruntime / torch lines).  Outside the tested
range is a warning with the known trouble and what to do; a missing dependency
is a failure.
"""
from __future__ import annotations

import platform

from .result import fail, ok, warn
from .tested_versions import INSIDE, MISSING, NEWER, OLDER, PYTHON, TESTED, place, range_text

NAME = "dependency versions"


def installed_versions(distributions: tuple) -> list:
    """``[(distribution, version)]`` of the installed ones among ``distributions``."""
    from importlib import metadata

    found = []
    for dist in distributions:
        try:
            found.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            continue
    return found


def assess(tested, installed: list) -> dict:
    """Where each installed distribution of ``tested`` lies, and the advice: a dict for the report."""
    if not installed:
        return {"name": tested.name, "place": MISSING, "versions": [],
                "advice": f"python -m pip install {tested.install} with the Python that runs ComfyUI."}
    places = [place(v, tested.oldest, tested.newest) for _, v in installed]
    where = next((p for p in (OLDER, NEWER) if p in places), INSIDE)
    advice = ""
    if where == OLDER:
        advice = tested.older or (f"python -m pip install -U {tested.install} (tested: {range_text(tested)})."
                                  if tested.install else "")
    elif where == NEWER:
        advice = tested.newer or (f"newer than the pack is tested with (up to {tested.newest}); it usually keeps "
                                  f"working. If PersonalVideo fails with it, go back to {tested.name} "
                                  f"{tested.newest} and report the failure.")
    return {"name": tested.name, "place": where, "versions": [f"{d} {v}" for d, v in installed], "advice": advice}


def _line(a: dict, tested) -> str:
    label = {INSIDE: "tested", OLDER: "OLDER than tested", NEWER: "newer than tested", MISSING: "not installed"}
    found = ", ".join(a["versions"]) or tested.name
    return f"{found}: {label[a['place']]} ({range_text(tested)})"


def check_dependency_versions(ctx):
    rows = [(PYTHON, assess(PYTHON, [("Python", platform.python_version())]))]
    rows += [(t, assess(t, installed_versions(t.distributions))) for t in TESTED]
    lines = [_line(a, t) for t, a in rows]
    fixes = [f"{a['name']}: {a['advice']}" for _, a in rows if a["advice"]]
    details = {a["name"]: {"place": a["place"], "versions": a["versions"], "tested": [t.oldest, t.newest]}
               for t, a in rows}
    places = {a["place"] for _, a in rows}
    message = "\n".join(lines)
    if MISSING in places:
        return fail(NAME, message, "\n".join(fixes), **details)
    if places - {INSIDE}:
        return warn(NAME, message, "\n".join(fixes), **details)
    return ok(NAME, message, **details)
