"""Offline evaluation: MovieLens loading, temporal splits, metrics, peers, reports."""
