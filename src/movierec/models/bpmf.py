"""Bayesian probabilistic matrix factorisation (Salakhutdinov & Mnih 2008) by Gibbs sampling in torch.

The explicit-rating head of the neural model: predictions average u.v over posterior
samples, which beat every point estimate we tried (see docs/model.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch


def _sample_hyper(factors: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (mean, precision) of the factors' Gaussian prior from its Normal-Wishart posterior."""
    n, dim = factors.shape
    beta0, nu0 = 2.0, float(dim)
    mean = factors.mean(0)
    centred = factors - mean
    scatter = centred.T @ centred
    beta, nu = beta0 + n, nu0 + n
    w_inv = torch.eye(dim, dtype=factors.dtype) + scatter + (beta0 * n / beta) * torch.outer(mean, mean)
    w = torch.linalg.inv(w_inv)
    w = (w + w.T) / 2
    # Bartlett decomposition: precision = L A A^T L^T with W = L L^T
    chol = torch.linalg.cholesky(w)
    a = torch.tril(torch.randn(dim, dim, generator=gen, dtype=factors.dtype), -1)
    a += torch.diag(torch.sqrt(_chi2(nu - torch.arange(dim, dtype=factors.dtype), gen)))
    la = chol @ a
    precision = la @ la.T
    mu_mean = (n * mean) / beta
    mu_chol = torch.linalg.cholesky(torch.linalg.inv(beta * precision))
    mu = mu_mean + mu_chol @ torch.randn(dim, generator=gen, dtype=factors.dtype)
    return mu, precision


def _chi2(dof: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Chi-square draws via Gamma(dof/2, 1/2) with an explicit generator (Marsaglia-Tsang)."""
    shape = dof / 2
    d = shape - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(dof)
    todo = torch.ones_like(dof, dtype=torch.bool)
    while todo.any():
        z = torch.randn(dof.shape, generator=gen, dtype=dof.dtype)
        u = torch.rand(dof.shape, generator=gen, dtype=dof.dtype)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z**2 + d - d * v + d * torch.log(v.clamp_min(1e-30)))
        take = ok & todo
        out[take] = (d * v)[take] * 2.0
        todo &= ~ok
    return out


def _sample_side(
    ratings: torch.Tensor, indicator: torch.Tensor, other: torch.Tensor,
    mu: torch.Tensor, precision: torch.Tensor, alpha: float, gen: torch.Generator,
) -> torch.Tensor:
    """Draw every row's factor from its Gaussian conditional given the other side's factors.

    `ratings` and `indicator` are sparse [rows, other] matrices (centred ratings, ones), so
    the per-row Gram matrices come from one sparse product with the other side's outer products.
    """
    n_rows, dim = indicator.shape[0], other.shape[1]
    outer = (other.unsqueeze(2) * other.unsqueeze(1)).reshape(len(other), dim * dim)
    gram = torch.sparse.mm(indicator, outer).reshape(n_rows, dim, dim)
    rhs = torch.sparse.mm(ratings, other)
    chol = torch.linalg.cholesky(precision + alpha * gram)
    mean = torch.cholesky_solve((alpha * rhs + precision @ mu).unsqueeze(2), chol).squeeze(2)
    noise = torch.randn(n_rows, dim, 1, generator=gen, dtype=other.dtype)
    return mean + torch.linalg.solve_triangular(chol.transpose(1, 2), noise, upper=True).squeeze(2)


def _baseline(
    u: torch.Tensor, m: torch.Tensor, r: torch.Tensor, n_users: int, n_movies: int, reg: float, sweeps: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Regularised user and movie offsets of centred ratings by alternating least squares."""
    user_bias, movie_bias = torch.zeros(n_users, dtype=r.dtype), torch.zeros(n_movies, dtype=r.dtype)
    n_u = torch.bincount(u, minlength=n_users).to(r.dtype)
    n_m = torch.bincount(m, minlength=n_movies).to(r.dtype)
    for _ in range(sweeps):
        movie_bias = torch.zeros_like(movie_bias).index_add_(0, m, r - user_bias[u]) / (n_m + reg)
        user_bias = torch.zeros_like(user_bias).index_add_(0, u, r - movie_bias[m]) / (n_u + reg)
    return user_bias.float(), movie_bias.float()


def _sparse(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR is beta" / invariant-check notices
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, shape, check_invariants=True)
        return coo.coalesce().to_sparse_csr()


class BPMF:
    """Gibbs-sampled BPMF; keeps `kept` thinned posterior samples for prediction."""

    def __init__(self, *, dim: int = 20, alpha: float = 2.0, burn_in: int = 20, samples: int = 80, kept: int = 20,
                 bias_reg: float | None = None) -> None:
        self.bias_reg = bias_reg
        self.dim, self.alpha, self.burn_in, self.samples, self.kept = dim, alpha, burn_in, samples, kept

    def fit(self, users: np.ndarray, movies: np.ndarray, ratings: np.ndarray, n_users: int, n_movies: int,
            *, seed: int = 0, progress: Callable[[float], None] | None = None) -> None:
        gen = torch.Generator().manual_seed(seed)
        u = torch.from_numpy(users.astype(np.int64))
        m = torch.from_numpy(movies.astype(np.int64))
        r = torch.from_numpy(ratings.astype(np.float64))
        self.mean_rating = float(r.mean())
        self.low, self.high = float(r.min()), float(r.max())
        r = r - self.mean_rating
        if self.bias_reg is None:
            self.user_bias, self.movie_bias = torch.zeros(n_users), torch.zeros(n_movies)
        else:
            self.user_bias, self.movie_bias = _baseline(u, m, r, n_users, n_movies, self.bias_reg)
        r = r - self.user_bias[u].double() - self.movie_bias[m].double()
        user_f = 0.1 * torch.randn(n_users, self.dim, generator=gen, dtype=torch.float64)
        movie_f = 0.1 * torch.randn(n_movies, self.dim, generator=gen, dtype=torch.float64)
        every = max(1, self.samples // self.kept)
        kept_u, kept_m = [], []
        ones = torch.ones_like(r)
        by_user = (_sparse(u, m, r, (n_users, n_movies)), _sparse(u, m, ones, (n_users, n_movies)))
        by_movie = (_sparse(m, u, r, (n_movies, n_users)), _sparse(m, u, ones, (n_movies, n_users)))
        for step in range(self.burn_in + self.samples):
            mu_m, prec_m = _sample_hyper(movie_f, gen)
            movie_f = _sample_side(*by_movie, user_f, mu_m, prec_m, self.alpha, gen)
            mu_u, prec_u = _sample_hyper(user_f, gen)
            user_f = _sample_side(*by_user, movie_f, mu_u, prec_u, self.alpha, gen)
            if progress is not None:
                progress((step + 1) / (self.burn_in + self.samples))
            if step >= self.burn_in and (step - self.burn_in) % every == 0:
                kept_u.append(user_f.float())
                kept_m.append(movie_f.float())
        self.user_samples = torch.stack(kept_u)
        self.movie_samples = torch.stack(kept_m)

    def predict(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        u = torch.from_numpy(np.asarray(users, dtype=np.int64))
        m = torch.from_numpy(np.asarray(movies, dtype=np.int64))
        dots = (self.user_samples[:, u] * self.movie_samples[:, m]).sum(-1).mean(0)
        base = self.mean_rating + self.user_bias[u] + self.movie_bias[m]
        return (dots + base).clamp(self.low, self.high).numpy()
