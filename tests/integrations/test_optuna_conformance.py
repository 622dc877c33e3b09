"""Optuna's own sampler contract tests (``optuna.testing.pytest_samplers``), run against AutoLLMSampler.

``BasicSamplerTestCase``, ``RelativeSamplerTestCase`` and ``SingleOnlySamplerTestCase`` apply: the sampler is
single-objective and samples relatively. ``MultiObjectiveSamplerTestCase`` does not apply (multi-objective
studies are refused with a clear error, which ``SingleOnlySamplerTestCase`` checks).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from optuna.samplers import BaseSampler
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    RelativeSamplerTestCase,
    SingleOnlySamplerTestCase,
)

from autollm_sampler.integrations.optuna import AutoLLMSampler


class _Plain:
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: AutoLLMSampler(agent="classical", seed=0)


class _WithFidelity:
    """All trials are target trials, but the sampler is configured with fidelity axes."""

    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: AutoLLMSampler(fidelity=("n_params",), target={"n_params": 1e9}, agent="classical", seed=1)


class TestBasic(_Plain, BasicSamplerTestCase):
    pass


class TestRelative(_Plain, RelativeSamplerTestCase):
    pass


class TestSingleOnly(_Plain, SingleOnlySamplerTestCase):
    pass


class TestBasicWithFidelityAxes(_WithFidelity, BasicSamplerTestCase):
    pass


class TestRelativeWithFidelityAxes(_WithFidelity, RelativeSamplerTestCase):
    pass
