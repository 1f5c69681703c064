"""Independent random streams derived from one seed, one per purpose.

Two ``random.Random(seed)`` with the same seed give the same numbers, so a frame
index and a prompt index drawn from them would be tied to each other. Each
purpose here (``"prompts"``, ``"frames"``, ``"noise"``, ...) gets its own seed,
a hash of (seed, purpose): the same for a seed on every machine, unrelated
between purposes.
"""
from __future__ import annotations

import hashlib
import random

SEED_BITS = 63


def stream_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose``, derived from ``seed``."""
    digest = hashlib.sha256(f"{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2 ** SEED_BITS)


def stream(seed: int, purpose: str) -> random.Random:
    """A ``random.Random`` for ``purpose`` alone."""
    return random.Random(stream_seed(seed, purpose))
