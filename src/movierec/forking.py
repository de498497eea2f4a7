"""The one process hook of the runtime: gunicorn forks its workers after the function is imported."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


def after_fork_in_child(method: Callable[[], None]) -> None:
    """Call a bound method in every forked child (a gunicorn worker), without keeping its object alive."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        if (alive := ref()) is not None:
            alive()

    os.register_at_fork(after_in_child=call)
