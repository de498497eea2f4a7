"""The ranking network: a recency-weighted denoising autoencoder trained to forecast the next items.

Each training step cuts every user's history at a random point; the encoder reads the
items before the cut (newest weighted highest), the softmax decoder is asked for the
items right after it, among movies the user has not seen yet. That is the task the
service faces: given the history so far, what comes next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class History:
    """Each user's movies in time order (CSR): movies[indptr[u]:indptr[u+1]], oldest first."""

    indptr: np.ndarray
    movies: np.ndarray
    times: np.ndarray

    @classmethod
    def build(cls, user_idx: np.ndarray, movie_idx: np.ndarray, times: np.ndarray, n_users: int) -> History:
        order = np.lexsort((np.arange(len(user_idx)), times, user_idx))
        indptr = np.concatenate([[0], np.cumsum(np.bincount(user_idx, minlength=n_users))]).astype(np.int64)
        return cls(indptr, movie_idx[order].astype(np.int64), times[order].astype(np.int64))

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)


def time_buckets(times: np.ndarray, n_buckets: int) -> np.ndarray:
    """Bucket edges at quantiles of the interaction times."""
    return np.quantile(times, np.linspace(0, 1, n_buckets + 1)[1:-1]).astype(np.int64)


def time_context(bucket: np.ndarray, movie_idx: np.ndarray, n_buckets: int, n_movies: int,
                 widths: tuple[int, ...]) -> np.ndarray:
    """[buckets, movies, len(widths)]: log share of each movie among interactions within +-w buckets."""
    counts = np.zeros((n_buckets, n_movies))
    np.add.at(counts, (bucket, movie_idx), 1.0)
    cumulative = np.vstack([np.zeros((1, n_movies)), np.cumsum(counts, 0)])
    features = []
    for width in widths:
        low = np.clip(np.arange(n_buckets) - width, 0, n_buckets)
        high = np.clip(np.arange(n_buckets) + width + 1, 0, n_buckets)
        window = cumulative[high] - cumulative[low]
        features.append(np.log(window / window.sum(1, keepdims=True).clip(1) + 1e-5))
    stacked = np.stack(features, -1)
    return ((stacked - stacked.mean()) / stacked.std().clip(1e-8)).astype(np.float32)


def bag(rows: np.ndarray, movies: np.ndarray, weights: np.ndarray, n_rows: int) -> tuple[torch.Tensor, ...]:
    """EmbeddingBag inputs (movies, offsets, L2-normalised weights) for a batch of weighted histories."""
    order = np.lexsort((movies, rows))
    rows, movies, weights = rows[order], movies[order], weights[order]
    norm = np.sqrt(np.bincount(rows, weights=weights**2, minlength=n_rows)).clip(1e-8)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))[:-1]])
    return (torch.from_numpy(movies.astype(np.int64)), torch.from_numpy(offsets.astype(np.int64)),
            torch.from_numpy((weights / norm[rows]).astype(np.float32)))


class ForecastNet(nn.Module):
    """Sparse encoder (tanh) -> softmax over movies, plus a learned mix of time-context popularity."""

    def __init__(self, n_movies: int, hidden: int, context: torch.Tensor) -> None:
        super().__init__()
        self.encoder = nn.EmbeddingBag(n_movies, hidden, mode="sum")
        nn.init.uniform_(self.encoder.weight, -(n_movies**-0.5), n_movies**-0.5)
        self.encoder_bias = nn.Parameter(torch.zeros(hidden))
        self.decoder = nn.Linear(hidden, n_movies)
        self.register_buffer("context", context)  # [buckets, movies, features]
        self.context_weight = nn.Parameter(torch.zeros(context.shape[-1]))

    def encode(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        movies, offsets, weights = inputs
        return torch.tanh(self.encoder(movies, offsets, per_sample_weights=weights) + self.encoder_bias)

    def forward(self, inputs: tuple[torch.Tensor, ...], bucket: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(inputs)) + _rows(self.context @ self.context_weight, bucket)

    def candidate_logits(self, inputs: tuple[torch.Tensor, ...], bucket: torch.Tensor,
                         candidates: torch.Tensor) -> torch.Tensor:
        """Logits of the `candidates` movies only: [rows, len(candidates)], for sampled softmax."""
        weight, bias = self.decoder.weight[candidates], self.decoder.bias[candidates]
        return self.encode(inputs) @ weight.T + bias + _rows(self.context[:, candidates] @ self.context_weight, bucket)


def _rows(mixed: torch.Tensor, bucket: torch.Tensor) -> torch.Tensor:
    """Each user's row of the per-bucket context mix: [buckets, movies] -> [users, movies], mixed per
    bucket first rather than copying [users, movies, features]. Under autograd as a one-hot product, whose
    gradient is a deterministic matmul (an indexing's scatter-add is not: same seed, other weights)."""
    if torch.is_grad_enabled():
        return F.one_hot(bucket, len(mixed)).to(mixed.dtype) @ mixed
    return mixed[bucket]


def forecast_loss(logits: torch.Tensor, seen: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Multinomial log-likelihood of the target movies (row, movie index pairs) among those not yet seen,
    averaged per row, then over rows."""
    rows, movies = target
    log_p = F.log_softmax(logits.masked_fill(seen, -1e9), dim=1)
    per_row = torch.zeros(len(logits)).index_add_(0, rows, log_p[rows, movies])
    return -(per_row / torch.bincount(rows, minlength=len(logits)).clamp_min(1)).mean()
