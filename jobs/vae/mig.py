"""Mutual Information Gap (Chen et al. 2018) with disentanglement_lib's conventions.

disentanglement_lib (`evaluation/metrics/mig.py`) scores 10,000 points: each code dimension (the
posterior mean) is discretised into 20 equal-width histogram bins, the mutual information between every
discretised code and every ground-truth factor is computed from counts (as sklearn's
`mutual_info_score`, in nats), and for each factor the gap between the two most informative codes is
divided by the factor's entropy; MIG is the mean over factors. Factors that take a single value have
zero entropy and are skipped. Pure numpy; no sklearn needed.
"""
from __future__ import annotations

import numpy as np


def histogram_discretize(codes: np.ndarray, bins: int = 20) -> np.ndarray:
    """(n, k) real codes -> (n, k) bin indices in 1..bins, per column over that column's range."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (samples, dims), got shape {codes.shape}")
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], bins)[1][:-1]
        out[:, j] = np.digitize(codes[:, j], edges)
    return out


def _labels(x: np.ndarray) -> tuple[np.ndarray, int]:
    values, inverse = np.unique(np.asarray(x), return_inverse=True)
    return inverse.reshape(-1), len(values)


def discrete_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information (nats) of two discrete label vectors, from their contingency table."""
    la, na = _labels(a)
    lb, nb = _labels(b)
    n = la.shape[0]
    if n == 0 or lb.shape[0] != n:
        raise ValueError("label vectors must be non-empty and of equal length")
    joint = np.bincount(la * nb + lb, minlength=na * nb).reshape(na, nb).astype(np.float64)
    pa = joint.sum(1, keepdims=True)
    pb = joint.sum(0, keepdims=True)
    nz = joint > 0
    mi = (joint[nz] / n) * (np.log(joint[nz] * n) - np.log((pa @ pb)[nz]))
    return float(max(mi.sum(), 0.0))


def discrete_entropy(y: np.ndarray) -> float:
    """Entropy (nats) of a discrete label vector."""
    _, counts = np.unique(np.asarray(y), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_info_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(k codes, f factors) mutual information, nats."""
    discrete_codes = np.asarray(discrete_codes)
    factors = np.asarray(factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    if discrete_codes.shape[0] != factors.shape[0]:
        raise ValueError(f"codes and factors differ in length: {discrete_codes.shape[0]} vs {factors.shape[0]}")
    m = np.zeros((discrete_codes.shape[1], factors.shape[1]))
    for i in range(discrete_codes.shape[1]):
        for j in range(factors.shape[1]):
            m[i, j] = discrete_mutual_info(discrete_codes[:, i], factors[:, j])
    return m


def mig_details(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> dict:
    """MIG plus what it is made of: per-factor gaps (None for skipped factors) and the MI matrix."""
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    m = mutual_info_matrix(histogram_discretize(codes, bins), factors)
    entropy = np.array([discrete_entropy(factors[:, j]) for j in range(factors.shape[1])])
    ordered = np.sort(m, axis=0)[::-1]
    second = ordered[1] if ordered.shape[0] > 1 else np.zeros(ordered.shape[1])
    gaps: list[float | None] = []
    for j in range(factors.shape[1]):
        gaps.append(None if entropy[j] <= 1e-12 else float((ordered[0, j] - second[j]) / entropy[j]))
    kept = [g for g in gaps if g is not None]
    if not kept:
        raise ValueError("every factor takes a single value; MIG is undefined")
    return {"mig": float(np.mean(kept)), "per_factor": gaps, "mutual_info": m, "entropy": entropy}


def mutual_info_gap(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> float:
    """MIG in [0, 1] of `codes` (n, k) — e.g. posterior means — against ground-truth `factors` (n, f)."""
    return mig_details(codes, factors, bins)["mig"]
