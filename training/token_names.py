"""The name a loaded adapter's token answers to in prompts (``embedding:<name>``), and the file behind it.

An adapter file carries its identity's token.  When it is loaded (Load SIA Adapter, or a reused identity),
the token is made available to ComfyUI's prompts under a name that follows the adapter *file* the user
picked, not the name it was trained under: ``alice_v1.safetensors`` (``alice`` renamed to keep it while a new
``alice`` is trained) answers to ``embedding:alice_v1``, so an old version, or a file someone shared, never
calls the token of whichever identity holds its training name today.

- The name is the file's own name (sanitised as identity names are) when every file ``embedding:<name>`` can
  stand for holds this very token, or when there is none: the token is then written to
  ``models/embeddings/<name>.safetensors``.
- When another token already answers to that name (another identity, or another tool's embedding), the
  token is registered as ``<name>-<the first 8 hex digits of its sha256>`` instead: a clash is resolved, not
  refused, and the same token always gets the same name.

The trigger phrase returned with the adapter says ``embedding:<that name>`` (and the class word it was
trained with), so a prompt built from it calls exactly the token of the file that was loaded.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re

import torch

from . import identity_files
from .errors import TrainingError

DIGEST_CHARS = 8


def token_digest(vector: torch.Tensor) -> str:
    """The first hex digits of the sha256 of the token's fp32 values."""
    data = vector.detach().float().cpu().contiguous().reshape(-1).numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def _holds(path: str, want: torch.Tensor) -> bool:
    try:
        have = identity_files.read_token(path)
    except TrainingError:      # not a token file we can read (another tool's .pt, a damaged file): another token
        return False
    return have.shape == want.shape and torch.allclose(have, want, rtol=0, atol=1e-6)


def _file_name(file_name: str, fallback: str) -> str:
    stem = os.path.splitext(os.path.basename(file_name or ""))[0]
    for candidate in (stem, fallback, "identity"):
        try:
            return identity_files.sanitise_name(candidate)
        except TrainingError:
            continue
    return "identity"


def register_token(vector: torch.Tensor, file_name: str, fallback: str = "",
                   key: str = identity_files.SD15_TOKEN_KEY) -> tuple:
    """``(name, written)``: the name ``embedding:<name>`` calls ``vector`` by, for an adapter loaded from
    ``file_name`` (see the module doc); ``written`` is the token file made for it (the vector under ``key``), or
    None when one was there."""
    want = vector.detach().float().cpu().reshape(-1, vector.shape[-1])
    base = _file_name(file_name, fallback)
    hashed = f"{base[:identity_files.MAX_NAME - DIGEST_CHARS - 1]}-{token_digest(want)}"
    for name in (base, hashed):
        files = identity_files.embedding_files(name)
        if files and all(_holds(path, want) for path in files):
            return name, None
        if not files:
            path = identity_files.identity_paths(name)["embedding"]
            try:
                return name, identity_files.write_token(path, want, key=key)
            except OSError as exc:
                raise TrainingError(f"could not write the token file {path} ({exc}): free disk space or fix the "
                                    "folder permissions.") from exc
    raise TrainingError(
        f"the names 'embedding:{base}' and 'embedding:{hashed}' both stand for other tokens than the one the "
        f"adapter {file_name} carries ({', '.join(identity_files.embedding_files(hashed))}). Move that file out "
        "of models/embeddings, then load the adapter again.")


def trigger_for(trigger: str, trained_name: str, name: str, class_word: str = "") -> str:
    """``trigger`` (the phrase saved with the adapter) calling ``embedding:<name>`` instead of the name the
    adapter was trained under."""
    pattern = re.compile(r"embedding:" + re.escape(trained_name) + r"(?![A-Za-z0-9_.-])")
    if trained_name and pattern.search(trigger or ""):
        return pattern.sub(lambda _: f"embedding:{name}", trigger)
    return " ".join(p for p in (f"embedding:{name}", class_word or "") if p)


def with_registered_token(adapter, file_name: str):
    """``(adapter, written)``: ``adapter`` (when it carries a token) with the info's ``name`` and ``trigger``
    set to the name its token is registered under for ``file_name``, and the token file written, if any (under
    the key of the adapter's model family: a Wan identity's token is a umT5 embedding file)."""
    if adapter.embedding is None:
        return adapter, None
    info = adapter.info
    name, written = register_token(adapter.embedding, file_name, info.name, identity_files.token_key(info.base))
    trigger = trigger_for(info.trigger, info.name, name, info.training.get("class_word", ""))
    adapter.info = dataclasses.replace(info, name=name, trigger=trigger)
    return adapter, written
