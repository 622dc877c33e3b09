"""One BLAS thread while the library computes: it shares the user's machine and never oversubscribes it.

The agent's matrix products are small (a few hundred rows), so BLAS threads buy nothing and, beside
another CPU-bound process (a training job, a second worker), a multi-threaded BLAS waits on busy cores:
measured on a 2-core machine, a sampler step over 1,000 trials took 101 ms with the default two OpenBLAS
threads and 55 ms with one, and 130 ms against 55 ms beside a busy process
(``python -m autollm_sampler.benchmark.overhead``).

:func:`one_blas_thread` limits BLAS to one thread for the duration of a block through ``threadpoolctl``
and restores the previous setting when the outermost block ends. Nested and concurrent blocks (Optuna's
``n_jobs``) share one limit, counted under a lock, so the user's setting is always restored. How a limit
set from a worker thread acts depends on the BLAS build (the OpenBLAS wheels of numpy 2 apply a limit set
from the main thread to every thread, and may ignore one set from another thread); the sampler's usual
``n_jobs=1`` proposes from the main thread.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["one_blas_thread"]

_lock = threading.Lock()
_depth = 0
_active: Any = None  # the threadpoolctl limit object of the outermost block
_controller: Any = None  # inspecting the loaded libraries costs about a millisecond: kept between blocks
_controller_modules = -1  # len(sys.modules) when the controller was built


def _get_controller() -> Any:
    """The controller of the BLAS libraries loaded now; rebuilt after new modules were imported (torch or
    scipy bring BLAS libraries of their own, which a controller built before them would not limit)."""
    global _controller, _controller_modules
    n = len(sys.modules)
    if _controller is None or n != _controller_modules:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
        _controller_modules = len(sys.modules)
    return _controller


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with one BLAS thread (the previous limits come back when the last block exits)."""
    global _depth, _active
    with _lock:
        if _depth == 0:
            _active = _get_controller().limit(limits=1, user_api="blas")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _active is not None:
                _active.restore_original_limits()
                _active = None
