"""Training memory grows with the parameters and one minibatch, never with users x movies.

Full-batch training held several dense [users x movies] tensors: 30,000 users x 27,000 movies
is 810 M cells a tensor, about 20 GB for the step. The fit runs in a subprocess whose address
space is capped, so a regression fails with MemoryError instead of swamping the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FIT = """
import json, resource, sys
import numpy as np
from movierec.models.base import Interactions
from movierec.models.neural import NeuralRecommender

resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
rng = np.random.default_rng(0)
users, movies, per_user = 30_000, 27_000, 20
user_idx = np.repeat(np.arange(users), per_user).astype(np.int32)
movie_idx = np.minimum(rng.zipf(1.3, users * per_user) - 1, movies - 1).astype(np.int32)
pairs = np.unique(np.stack([user_idx, movie_idx], 1), axis=0)
n = len(pairs)
data = Interactions(
    user_ids=np.arange(users, dtype=np.int64), movie_ids=np.array([f"m{i}" for i in range(movies)]),
    user_idx=pairs[:, 0].astype(np.int32), movie_idx=pairs[:, 1].astype(np.int32),
    watch_minutes=np.ones(n, np.float32), rating=np.full(n, np.nan, np.float32),
    last_time=1_790_000_000 + rng.integers(0, 30 * 86_400, n),
)
model = NeuralRecommender(rating_head=False, max_steps=4, threads=2)
model.fit(data, progress=lambda fraction: None)
scores = model.score(np.arange(2048))
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "steps": model.training["steps"], "batches": model.training["batches_per_epoch"],
                  "shape": list(scores.shape)}))
"""


@pytest.mark.integration  # fits in a subprocess, its address space capped: not in `make test-fast`
def test_fit_at_30k_users_x_27k_movies_stays_within_a_batch_sized_bound() -> None:
    done = subprocess.run([sys.executable, "-c", FIT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["steps"] == 4 and result["batches"] > 20 and result["shape"] == [2048, 27_000]
    # parameters with Adam's state (~0.35 GB), one batch's dense tensors (~0.6 GB), torch itself
    print(result)
    assert result["peak_mb"] < 2_500, result
