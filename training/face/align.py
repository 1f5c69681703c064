"""5-point face alignment: similarity transform and a differentiable warp.

The transform maps the five detected keypoints (left eye, right eye, nose tip,
left and right mouth corners, in image pixels) onto the ArcFace template of a
112x112 crop by least squares over rotation, uniform scale and translation
(Umeyama, "Least-squares estimation of transformation parameters between two
point patterns", PAMI 1991).  Pixel coordinates follow OpenCV: pixel centres are
integers, (0, 0) is the centre of the top-left pixel.

The warp samples the image with ``affine_grid``/``grid_sample`` (bilinear, zero
outside the image, like ``cv2.warpAffine(..., borderValue=0)``), so it is
differentiable with respect to the image.  The transform itself is computed from
detached keypoints and carries no gradient.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
ARCFACE_SIZE = 112


def umeyama(src: np.ndarray, dst: np.ndarray, estimate_scale: bool = True) -> np.ndarray:
    """The 3x3 similarity matrix T minimising sum ||dst_i - T(src_i)||^2."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[0] < 2:
        raise ValueError(f"need two matching point sets of shape [N>=2, D], got {src.shape} and {dst.shape}")
    n, dim = src.shape
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        raise ValueError("degenerate points: all source points coincide")
    d = np.ones(dim)
    if rank == dim - 1:
        # Sigma is singular: the sign of det(cov) says nothing; use det(U) det(V).
        if np.linalg.det(u) * np.linalg.det(vt) < 0:
            d[-1] = -1.0
    elif np.linalg.det(cov) < 0:
        d[-1] = -1.0  # the best rotation, not a reflection
    rot = u @ np.diag(d) @ vt
    var_src = (src_c ** 2).sum() / n
    scale = float((s * d).sum() / var_src) if estimate_scale else 1.0
    t = np.eye(dim + 1)
    t[:dim, :dim] = scale * rot
    t[:dim, dim] = mu_dst - scale * rot @ mu_src
    return t


def estimate_norm(keypoints: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """The 2x3 matrix taking image pixels to the ``size`` x ``size`` ArcFace crop."""
    kps = np.asarray(keypoints, dtype=np.float64).reshape(5, 2)
    if not np.all(np.isfinite(kps)):
        raise ValueError("face keypoints contain NaN or infinity")
    if size % 112 == 0:
        template = ARCFACE_TEMPLATE * (size / 112.0)
    elif size % 128 == 0:  # insightface's 128-crop convention: scaled, shifted 8px right
        template = ARCFACE_TEMPLATE * (size / 128.0)
        template = template + np.array([8.0 * size / 128.0, 0.0])
    else:
        raise ValueError(f"crop size must be a multiple of 112 or 128, got {size}")
    return umeyama(kps, template)[:2]


def _theta(matrices: torch.Tensor, in_hw: tuple, out_hw: tuple) -> torch.Tensor:
    """affine_grid theta (output normalised coords -> input normalised coords).

    With align_corners=False a pixel index p maps to normalised (2p + 1) / size - 1.
    """
    n = matrices.shape[0]
    dtype = torch.float64
    full = torch.zeros(n, 3, 3, dtype=dtype, device=matrices.device)
    full[:, :2] = matrices.to(dtype)
    full[:, 2, 2] = 1.0
    inverse = torch.linalg.inv(full)  # crop pixels -> image pixels

    def pixels_to_norm(h, w):
        m = torch.zeros(3, 3, dtype=dtype, device=matrices.device)
        m[0, 0], m[0, 2] = 2.0 / w, 1.0 / w - 1.0
        m[1, 1], m[1, 2] = 2.0 / h, 1.0 / h - 1.0
        m[2, 2] = 1.0
        return m

    to_in = pixels_to_norm(*in_hw)
    from_out = torch.linalg.inv(pixels_to_norm(*out_hw))
    return (to_in @ inverse @ from_out)[:, :2]


def warp_affine(images: torch.Tensor, matrices, size: int = ARCFACE_SIZE) -> torch.Tensor:
    """Differentiable ``cv2.warpAffine(image, M, (size, size), borderValue=0)``.

    images: [N, C, H, W] float; matrices: [N, 2, 3] (numpy or tensor) mapping image
    pixels to crop pixels, as :func:`estimate_norm` returns.  Output [N, C, size, size].
    """
    if images.ndim != 4:
        raise ValueError(f"warp_affine needs [N, C, H, W] images, got shape {tuple(images.shape)}")
    m = torch.as_tensor(np.asarray(matrices) if not torch.is_tensor(matrices) else matrices)
    m = m.reshape(-1, 2, 3).to(images.device)
    if m.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {m.shape[0]} transforms")
    theta = _theta(m, images.shape[-2:], (size, size)).to(images.dtype if images.is_floating_point() else torch.float32)
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def align_faces(images: torch.Tensor, keypoints, size: int = ARCFACE_SIZE) -> torch.Tensor:
    """Aligned crops [N, C, size, size] of image i at keypoints i (each [5, 2])."""
    kps = np.asarray(keypoints, dtype=np.float64).reshape(-1, 5, 2)
    matrices = np.stack([estimate_norm(k, size) for k in kps])
    return warp_affine(images, matrices, size)
