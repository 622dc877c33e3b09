"""one_blas_thread: one BLAS thread inside, the user's setting back after, also with nesting and threads."""

from __future__ import annotations

import threading

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from autollm_sampler._threads import one_blas_thread


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_one_thread_inside_and_the_previous_limit_after() -> None:
    np.ones((4, 4)) @ np.ones((4, 4))  # BLAS loaded
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        with one_blas_thread():
            assert set(_blas_threads()) == {1}
            with one_blas_thread():  # nested: still one, and the outer block still restores
                assert set(_blas_threads()) == {1}
            assert set(_blas_threads()) == {1}
        assert _blas_threads() == before


def test_overlapping_blocks_in_threads_restore_the_user_setting() -> None:
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        inside: list[set[int]] = []
        start = threading.Barrier(4)

        def work() -> None:
            start.wait()
            for _ in range(50):
                with one_blas_thread():
                    inside.append(set(_blas_threads()))

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # what a worker thread sees depends on the BLAS build (OpenBLAS may ignore a limit set off the main
        # thread); what must hold everywhere is that the user's setting comes back
        assert len(inside) == 200
        assert _blas_threads() == before


def test_an_error_inside_still_restores() -> None:
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        try:
            with one_blas_thread():
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        assert _blas_threads() == before
