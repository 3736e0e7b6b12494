"""Sample-quality metrics: mode counts on 2D mixtures, Frechet distance, precision/recall, density/coverage.

Notation (code name -> symbol):

==================  =========================================================
``feats``           features phi(x) [N, d] (rows are samples)
``mu``, ``cov``     mean mu [d] and covariance Sigma [d, d] of the features
``k``               the k of the k-nearest-neighbour balls
``radii``           NND_k(x_i): distance of x_i to its k-th nearest neighbour
==================  =========================================================

Sources:

- Mode counts: Srivastava et al. 2017 (VEEGAN) and Lin et al. 2018 (PacGAN): a sample is *high quality* if it
  lies within 3 standard deviations of its nearest mode; a mode is *captured* if it is the nearest mode of at
  least one high-quality sample (VEEGAN: "the number of mixture components whose mean is nearest to at least
  one high quality sample"; PacGAN's code counts the modes with a non-zero number of such samples).
- Frechet distance: Dowson and Landau 1982; FID, Heusel et al. 2017.
- Precision and recall: Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
  Generative Models" (k-NN balls around real / generated features, k = 3).
- Density and coverage: Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models"
  (k-NN balls around the real features only, k = 5).

Distances are computed with ``torch.cdist`` in float64 and in row chunks, on the device of the inputs, so
N = 10,000 fits on a GPU and N = 2,000 takes well under a second on a CPU.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..checks import check_positive, check_tensor

__all__ = [
    "mode_stats",
    "feature_stats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "real_vs_real_floor",
    "precision_recall",
    "density_coverage",
]

_CHUNK = 1024


def _check_feats(name: str, feats, min_rows: int = 1) -> torch.Tensor:
    check_tensor(name, feats)
    if feats.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor [N, d] (one row per sample), got shape {tuple(feats.shape)}.")
    if feats.shape[0] < min_rows or feats.shape[1] < 1:
        raise ValueError(f"{name} needs at least {min_rows} rows [N, d] with d >= 1, got shape {tuple(feats.shape)}.")
    return feats


def _check_pair(real, fake, min_rows: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    _check_feats("real_feats", real, min_rows)
    _check_feats("fake_feats", fake, min_rows)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real and fake features must have the same dimension d, got {real.shape[1]} and {fake.shape[1]}; "
            "extract both with the same network."
        )
    return real, fake.to(real.device)


def _check_k(k, n_real: int, n_fake: int | None = None) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (the number of nearest neighbours) must be an integer >= 1, got {k!r}.")
    smallest = n_real if n_fake is None else min(n_real, n_fake)
    if k >= smallest:
        raise ValueError(f"k = {k} needs more than k samples in each set, got {smallest}; use more samples or a smaller k.")
    return k


# ----------------------------------------------------------------------------------------------- mode counts


def mode_stats(samples, centres, std, threshold: float = 3.0, min_count: int = 1) -> dict:
    """Count the modes a 2D sample set captures and the fraction of high-quality samples (VEEGAN / PacGAN).

    Implements the mode-collapse protocol of Srivastava et al. 2017 and Lin et al. 2018: each sample goes to
    its nearest centre in std-normalised distance ||x - c_k|| / std_k; it is high quality if that distance is
    below ``threshold`` (3). A mode is covered if it receives at least ``min_count`` (1) high-quality samples.

    Returns dict(modes_covered: int, n_modes: int, high_quality_fraction: float, per_mode: LongTensor [K] of
    high-quality counts). Exact samples of a d-dimensional mixture are high quality with probability
    P(chi_d < 3): 0.9889 in 2D.
    """
    _check_feats("samples", samples)
    _check_feats("centres", centres)
    if samples.shape[1] != centres.shape[1]:
        raise ValueError(
            f"samples and centres must have the same dimension, got {samples.shape[1]} and {centres.shape[1]}."
        )
    stds = torch.as_tensor(std, dtype=torch.float64)
    if stds.dim() == 0:
        stds = stds.expand(centres.shape[0])
    if stds.shape != (centres.shape[0],) or not torch.isfinite(stds).all() or (stds <= 0).any():
        raise ValueError(f"std must be a positive number or a tensor [K] = [{centres.shape[0]}] of positive numbers.")
    check_positive("threshold", threshold)
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}.")
    x = samples.detach().double()
    c = centres.detach().double().to(x.device)
    stds = stds.to(x.device)
    per_mode = torch.zeros(c.shape[0], dtype=torch.long, device=x.device)
    n_good = 0
    for i in range(0, x.shape[0], 16 * _CHUNK):
        dist = torch.cdist(x[i : i + 16 * _CHUNK], c) / stds  # [chunk, K]
        best, nearest = dist.min(dim=1)
        good = best < threshold
        per_mode += torch.bincount(nearest[good], minlength=c.shape[0])
        n_good += int(good.sum())
    per_mode = per_mode.cpu()
    return {
        "modes_covered": int((per_mode >= min_count).sum()),
        "n_modes": int(c.shape[0]),
        "high_quality_fraction": n_good / x.shape[0],
        "per_mode": per_mode,
    }


# ------------------------------------------------------------------------------------------ Frechet distance


def feature_stats(feats) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the mean [d] and the unbiased covariance [d, d] of features [N, d], in float64 on the CPU.

    Needs N >= d + 1 rows: with fewer the covariance is singular and a Frechet distance is dominated by bias.
    """
    _check_feats("feats", feats)
    n, d = feats.shape
    if n < d + 1:
        raise ValueError(
            f"feature_stats needs at least d + 1 = {d + 1} samples to estimate a {d}x{d} covariance, got N = {n}; "
            "use more samples (the book uses N >= 2,000 for 128-d features)."
        )
    x = feats.detach().to("cpu", torch.float64)
    mu = x.mean(dim=0)
    xc = x - mu
    cov = xc.T @ xc / (n - 1)
    return mu, cov


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance_from_stats(mu1, cov1, mu2, cov2) -> float:
    """Frechet distance between N(mu1, cov1) and N(mu2, cov2).

    Implements ``FD = |mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2))`` (Dowson and Landau 1982; Heusel et
    al. 2017). The trace of (cov1 cov2)^(1/2) is computed as the sum of the square roots of the eigenvalues of
    the symmetric PSD matrix cov1^(1/2) cov2 cov1^(1/2), which has the same eigenvalues as cov1 cov2; this
    avoids the complex intermediate results of a general matrix square root.
    """
    mu1, mu2 = (np.asarray(torch.as_tensor(m).detach().cpu(), dtype=np.float64) for m in (mu1, mu2))
    cov1, cov2 = (np.asarray(torch.as_tensor(c).detach().cpu(), dtype=np.float64) for c in (cov1, cov2))
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(
            f"expected means [d] and covariances [d, d] of one dimension d, got shapes {mu1.shape}, {cov1.shape}, "
            f"{mu2.shape}, {cov2.shape}; compute them with diffbook.eval.metrics.feature_stats."
        )
    for name, a in (("mu1", mu1), ("cov1", cov1), ("mu2", mu2), ("cov2", cov2)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinite values; check the features it was computed from.")
    s1 = _sqrtm_psd(cov1)
    eig = np.linalg.eigvalsh(s1 @ ((cov2 + cov2.T) / 2) @ s1)
    tr_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)
    return max(fd, 0.0)


def frechet_distance(feats_a, feats_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N_a, d] and [N_b, d] (FID's formula).

    Implements Eq. (frechet-distance); Heusel et al. 2017. Biased upwards at finite N: report it beside
    `real_vs_real_floor` for the same N.
    """
    _check_feats("feats_a", feats_a)
    _check_feats("feats_b", feats_b)
    if feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"feats_a and feats_b must have the same dimension d, got {feats_a.shape[1]} and {feats_b.shape[1]}.")
    return frechet_distance_from_stats(*feature_stats(feats_a), *feature_stats(feats_b))


def real_vs_real_floor(real_feats, n: int, generator: torch.Generator | None = None, repeats: int = 1) -> float:
    """Frechet distance between two disjoint random subsets of n real features each (mean over ``repeats``).

    The floor an FD of n generated samples should be compared with: even a perfect model scores about this,
    because the estimate is biased at finite n. Needs at least 2 n real features.
    """
    _check_feats("real_feats", real_feats)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}.")
    if 2 * n > real_feats.shape[0]:
        raise ValueError(
            f"real_vs_real_floor needs 2 n = {2 * n} real features for two disjoint sets, got {real_feats.shape[0]}; "
            "use a smaller n or more real images."
        )
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}.")
    values = []
    for _ in range(repeats):
        perm = torch.randperm(real_feats.shape[0], generator=generator).to(real_feats.device)
        values.append(frechet_distance(real_feats[perm[:n]], real_feats[perm[n : 2 * n]]))
    return float(np.mean(values))


# -------------------------------------------------------------------------------- k-NN ball based metrics


def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each row of x to its k-th nearest other row (the row itself, at distance 0, is skipped)."""
    radii = []
    for i in range(0, x.shape[0], _CHUNK):
        dist = torch.cdist(x[i : i + _CHUNK], x)
        radii.append(dist.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _ball_counts(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor):
    """For each point, how many balls B(centre_i, radii_i) contain it; for each ball, the distance to its nearest point."""
    counts = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    nearest = torch.full((centres.shape[0],), math.inf, dtype=points.dtype, device=points.device)
    for i in range(0, points.shape[0], _CHUNK):
        dist = torch.cdist(points[i : i + _CHUNK], centres)  # [chunk, N_centres]
        counts[i : i + _CHUNK] = (dist <= radii[None, :]).sum(dim=1)
        nearest = torch.minimum(nearest, dist.min(dim=0).values)
    return counts, nearest


def precision_recall(real_feats, fake_feats, k: int = 3) -> dict:
    """Improved precision and recall of generated features against real ones (Kynkaanniemi et al. 2019).

    precision: fraction of fake samples inside at least one real k-NN ball B(phi_r, NND_k(phi_r)) (fidelity);
    recall: fraction of real samples inside at least one fake k-NN ball (diversity). Returns a dict of floats.
    """
    real, fake = _check_pair(real_feats, fake_feats, min_rows=2)
    _check_k(k, real.shape[0], fake.shape[0])
    real, fake = real.detach().double(), fake.detach().double()
    real_counts, _ = _ball_counts(fake, real, _knn_radii(real, k))
    fake_counts, _ = _ball_counts(real, fake, _knn_radii(fake, k))
    return {"precision": float((real_counts > 0).double().mean()), "recall": float((fake_counts > 0).double().mean())}


def density_coverage(real_feats, fake_feats, k: int = 5) -> dict:
    """Density and coverage of generated features against real ones (Naeem et al. 2020).

    density = (1 / (k M)) sum_j sum_i 1[fake_j in B(real_i, NND_k(real_i))] (about 1 when fake ~ real; above
    1 when fakes crowd into dense real regions); coverage = fraction of real balls that contain at least one
    fake sample. Only real-sample balls are used, so outliers among the fakes cannot inflate either.
    """
    real, fake = _check_pair(real_feats, fake_feats, min_rows=2)
    _check_k(k, real.shape[0])
    real, fake = real.detach().double(), fake.detach().double()
    radii = _knn_radii(real, k)
    counts, nearest_fake = _ball_counts(fake, real, radii)
    return {
        "density": float(counts.double().sum() / (k * fake.shape[0])),
        "coverage": float((nearest_fake <= radii).double().mean()),
    }
