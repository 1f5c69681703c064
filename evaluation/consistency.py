"""Identity consistency over time: how steady the identity is from frame to frame."""
from __future__ import annotations

import numpy as np


def identity_consistency(score, stride: int = 1) -> dict:
    """Spread of the per-frame similarities and the mean cosine of consecutive scored frames' embeddings.

    ``score`` is a scoring.IdentityScore.  ``stride``: the frame-to-frame cosine uses the scored frames whose index
    is a multiple of it (motion.frame_stride of the video's frame rate: about 8 per second), so that it compares
    across frame rates (at 16 fps neighbouring frames are closer than at 8 fps); the spread uses every scored frame.
    Values are None where fewer than two frames have a face.
    """
    scored = score.scored
    sims = np.array([f.similarity for f in scored], np.float64)
    out = {"frames_scored": len(scored), "similarity_std": None, "similarity_min": None,
           "similarity_max": None, "consecutive_embedding_cosine": None}
    if len(sims):
        out.update(similarity_min=float(sims.min()), similarity_max=float(sims.max()))
    if len(sims) >= 2:
        out["similarity_std"] = float(sims.std())
    paced = [f for f in scored if f.index % max(1, stride) == 0]
    if len(paced) >= 2:
        embs = np.stack([f.embedding / max(np.linalg.norm(f.embedding), 1e-12) for f in paced])
        out["consecutive_embedding_cosine"] = float(np.mean(np.sum(embs[1:] * embs[:-1], axis=1)))
    return out
