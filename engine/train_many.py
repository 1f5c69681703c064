"""`personalvideo train-many`: one training per manifest row, as Ray tasks, with a summary table.

Manifest (CSV, header row): ``name``, ``class_word``, ``photos`` (files or a folder,
``;`` between several, relative to the manifest's folder), and optional columns
overriding the command line's training settings for that row (:data:`OVERRIDES`).

- Each identity is one Ray task asking for one GPU where the cluster has GPUs
  (``--gpus-per-task`` for a fraction), else one CPU; a local Ray by default,
  an existing cluster with ``--address``.
- An identity whose files exist and were trained from the same inputs is skipped:
  the record in its adapter file (photo hashes, the base model's fingerprint, the
  prompts, every setting; :mod:`..training.identity_record`, the one the Train node
  writes and compares) equals the one this run would write.  One whose files exist
  with other inputs fails with what differs, unless ``--overwrite``.
- A failed identity is tried once more (``--retries``); a failure never stops
  the others: each task returns its error instead of raising it.
- The summary (name, status, attempts, seconds, final similarity, paths, error) is
  written as CSV and JSON, each whole or not at all.

Ray is imported here only, when the command runs.  Workers import the pack as
``comfyui_personalvideo``: installed (pip), or through a link to this checkout that
the driver puts on their PYTHONPATH (on a cluster: the same path on shared storage).
"""
from __future__ import annotations

import csv
import json
import os
import time

from ..sia.atomic_file import atomic_write
from .errors import EngineError

REQUIRED = ("name", "class_word", "photos")
OVERRIDES = ("ti_steps", "ti_lr", "ti_batch_size", "sia_iterations", "sia_lr", "rank", "reg_lambda", "frames",
             "width", "height", "sampling_steps", "seed", "precision")
SUMMARY_FIELDS = ("name", "status", "attempts", "seconds", "final_similarity", "sia", "embedding", "error")
PACKAGE = "comfyui_personalvideo"


def read_manifest(path: str) -> list:
    """Rows as dicts: name, class_word, photos (absolute paths), overrides (dict)."""
    if not os.path.isfile(path):
        raise EngineError(f"manifest {path} not found.")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        unknown = [c for c in header if c not in REQUIRED and c not in OVERRIDES]
        if missing or unknown:
            problems = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
                ([f"unknown column(s) {', '.join(unknown)}"] if unknown else [])
            raise EngineError(f"manifest {path}: wrong columns ({'; '.join(problems)}); the header holds name, "
                              f"class_word, photos and optional overrides {', '.join(OVERRIDES)}.")
        rows, names = [], set()
        base = os.path.dirname(os.path.abspath(path))
        for number, raw in enumerate(reader, start=2):
            raw = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
            if not any(raw.values()):
                continue
            if not raw["name"] or not raw["class_word"] or not raw["photos"]:
                raise EngineError(f"manifest {path}, line {number}: name, class_word and photos are all needed.")
            if raw["name"].lower() in names:
                raise EngineError(f"manifest {path}, line {number}: the name {raw['name']!r} appears twice.")
            names.add(raw["name"].lower())
            photos = [p if os.path.isabs(p) else os.path.join(base, p) for p in raw["photos"].split(";") if p]
            rows.append({"name": raw["name"], "class_word": raw["class_word"], "photos": photos,
                         "overrides": {k: raw[k] for k in OVERRIDES if raw.get(k)}})
    if not rows:
        raise EngineError(f"manifest {path} has no identities.")
    return rows


class BaseModel:
    """The fingerprint of the command line's checkpoint and motion model (:mod:`.model_fingerprint`), read once
    and only when an existing identity has to be compared."""

    def __init__(self, args):
        self.args, self.value = args, None

    def fingerprint(self) -> dict:
        if self.value is None:
            from .model_fingerprint import fingerprint
            from .train_job import load_engine_models

            models, motion = load_engine_models(self.args, motion=True)
            self.value = fingerprint(models, motion)
        return self.value


def expected_record(args, row, base_model: BaseModel) -> dict:
    """The record an identity trained from ``row`` with this command line carries in its adapter file."""
    from ..training import identity_setup, prompts as prompt_data
    from .train import photo_paths, read_photo
    from .train_job import read_prompts, train_settings

    ti, sia, rank = train_settings(args, row["overrides"])
    text = read_prompts(args)
    templates = prompt_data.parse_prompts(text) if text else prompt_data.default_prompts()
    photos = [read_photo(p) for p in photo_paths(row["photos"])]
    return identity_setup.record_of(photos, identity_setup.check_class_word(row["class_word"], "class_word"),
                                    templates, ti, sia, rank, args.training_negative, base_model.fingerprint())


def existing_state(args, row, base_model: BaseModel | None = None) -> tuple:
    """("new" | "same" | "different", paths, what differs) for the identity files of ``row``."""
    from ..sia import load_adapter
    from ..training.errors import TrainingError
    from ..training.identity_record import RECORD_KEY, differences
    from .identity_store import identity_paths
    from .train_job import models_dir_of

    paths = identity_paths(models_dir_of(args), row["name"])
    if not all(os.path.exists(p) for p in paths.values()):
        return "new", paths, []
    try:
        stored = load_adapter(paths["sia"]).info.training.get(RECORD_KEY)
    except Exception as exc:  # noqa: BLE001  (an unreadable file is "different": retrain or refuse)
        return "different", paths, [f"its adapter cannot be read ({type(exc).__name__}: {exc})"]
    if not isinstance(stored, dict):
        return "different", paths, ["its adapter holds no record of what it was trained from (an older version "
                                    "of the pack wrote it)"]
    base_model = base_model or BaseModel(args)
    base_model.fingerprint()     # a checkpoint that cannot be loaded stops the run here, with its own message
    try:
        changed = differences(stored, expected_record(args, row, base_model))
    except (EngineError, TrainingError) as exc:  # this row's photos or class word: its training would stop too
        return "different", paths, [str(exc)]
    return ("different" if changed else "same"), paths, changed


def train_row(args, row) -> dict:
    """One identity in a worker: the result row, never an exception."""
    import importlib

    start = time.time()
    try:
        # by the stable name, not relative: a host may have imported this module under another name (its folder
        # path), and a worker knows the pack only by the stable one
        train_one = importlib.import_module(PACKAGE + ".engine.train_job").train_one
        result = train_one(args, row["photos"], row["name"], row["class_word"], row["overrides"],
                           label=f"{row['name']} ")
        return {"name": row["name"], "status": "trained", "seconds": round(time.time() - start, 1),
                "final_similarity": result["final_similarity"], "sia": result["paths"]["sia"],
                "embedding": result["paths"]["embedding"], "error": ""}
    except Exception as exc:  # noqa: BLE001  (reported in the summary; the other identities go on)
        return {"name": row["name"], "status": "failed", "seconds": round(time.time() - start, 1),
                "final_similarity": None, "sia": "", "embedding": "", "error": f"{type(exc).__name__}: {exc}"}


train_row.__module__ = PACKAGE + ".engine.train_many"  # workers import it by this name (see worker_path)


def worker_path() -> str:
    """A folder from which ``import comfyui_personalvideo`` finds this pack (for the workers' PYTHONPATH)."""
    pack = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.basename(pack) == PACKAGE:
        return os.path.dirname(pack)
    folder = os.path.join(os.path.expanduser("~"), ".cache", "personalvideo", "ray_path", str(abs(hash(pack))))
    link = os.path.join(folder, PACKAGE)
    os.makedirs(folder, exist_ok=True)
    if not os.path.islink(link) or os.path.realpath(link) != os.path.realpath(pack):
        tmp = link + f".{os.getpid()}"
        os.symlink(pack, tmp)
        os.replace(tmp, link)
    return folder


def start_ray(args):
    import ray

    path = worker_path()
    env = {"PYTHONPATH": os.pathsep.join(p for p in (path, os.environ.get("PYTHONPATH", "")) if p),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if not ray.is_initialized():
        kwargs = {"address": args.address} if args.address else {"num_cpus": args.num_cpus,
                                                                 "include_dashboard": False}
        ray.init(runtime_env={"env_vars": env}, log_to_driver=False, **kwargs)
    return ray


def write_summary(rows: list, stem: str) -> tuple:
    """STEM.csv and STEM.json, each written to a temporary file and renamed."""
    stem = os.path.abspath(stem)
    out = []
    for ext, write in ((".csv", _write_csv), (".json", _write_json)):
        def to_file(tmp, write=write):
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                write(f, rows)
        out.append(atomic_write(stem + ext, to_file))
    return tuple(out)


def _write_csv(f, rows):
    writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in SUMMARY_FIELDS})


def _write_json(f, rows):
    json.dump([{k: row.get(k) for k in SUMMARY_FIELDS} for row in rows], f, indent=2)


def run_manifest(args) -> dict:
    rows = read_manifest(args.manifest)
    results, todo = {}, []
    base_model = BaseModel(args)
    for row in rows:
        state, paths, changed = existing_state(args, row, base_model)
        if state == "same" and not args.overwrite:
            results[row["name"]] = {"name": row["name"], "status": "skipped", "attempts": 0, "seconds": 0.0,
                                    "final_similarity": _saved_similarity(paths["sia"]), "sia": paths["sia"],
                                    "embedding": paths["embedding"], "error": ""}
        elif state == "different" and not args.overwrite:
            results[row["name"]] = {"name": row["name"], "status": "failed", "attempts": 0, "seconds": 0.0,
                                    "final_similarity": None, "sia": paths["sia"], "embedding": paths["embedding"],
                                    "error": "its files exist and differ from this run: " + "; ".join(changed)
                                    + "; pass --overwrite to retrain"}
        else:
            todo.append(row)
    if todo:
        ray = start_ray(args)
        gpus = args.gpus_per_task
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=1)(train_row)  # max_retries: a worker crash
        attempts = {row["name"]: 0 for row in todo}
        pending = {}
        for row in todo:
            pending[task.remote(args, row)] = row
            attempts[row["name"]] += 1
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            row = pending.pop(done[0])
            try:
                result = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001  (the worker died twice: Ray's own retry is spent)
                result = {"name": row["name"], "status": "failed", "seconds": None, "final_similarity": None,
                          "sia": "", "embedding": "", "error": f"{type(exc).__name__}: {exc}"}
            if result["status"] == "failed" and attempts[row["name"]] <= args.retries:
                pending[task.remote(args, row)] = row
                attempts[row["name"]] += 1
                continue
            result["attempts"] = attempts[row["name"]]
            results[row["name"]] = result
    ordered = [results[row["name"]] for row in rows]
    csv_path, json_path = write_summary(ordered, args.summary)
    counts = {}
    for r in ordered:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {"rows": ordered, "counts": counts, "csv": csv_path, "json": json_path}


def _saved_similarity(path: str):
    from ..sia import load_adapter

    return load_adapter(path).info.training.get("final_similarity")
