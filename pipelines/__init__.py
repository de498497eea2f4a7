"""Batch steps: snapshot, train, precompute fan-out, publish; wired together in `pipeline.py`."""
