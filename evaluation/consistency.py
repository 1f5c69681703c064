"""Identity consistency over time: how steady the identity is from frame to frame."""
from __future__ import annotations

import numpy as np


def identity_consistency(score) -> dict:
    """Spread of the per-frame similarities and the mean cosine of consecutive scored frames' embeddings.

    ``score`` is a scoring.IdentityScore.  Values are None where fewer than two frames have a face.
    """
    scored = score.scored
    sims = np.array([f.similarity for f in scored], np.float64)
    out = {"frames_scored": len(scored), "similarity_std": None, "similarity_min": None,
           "similarity_max": None, "consecutive_embedding_cosine": None}
    if len(sims):
        out.update(similarity_min=float(sims.min()), similarity_max=float(sims.max()))
    if len(sims) >= 2:
        out["similarity_std"] = float(sims.std())
        embs = np.stack([f.embedding / max(np.linalg.norm(f.embedding), 1e-12) for f in scored])
        out["consecutive_embedding_cosine"] = float(np.mean(np.sum(embs[1:] * embs[:-1], axis=1)))
    return out
