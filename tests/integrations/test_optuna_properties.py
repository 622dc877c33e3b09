"""Property tests: random spaces, histories and trial states never make AutoLLMSampler raise in a study,
and every value it returns lies inside its distribution."""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from autollm_sampler.integrations.optuna import AutoLLMSampler

optuna.logging.set_verbosity(optuna.logging.ERROR)

TARGET = {"n_params": 1e9}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@st.composite
def distributions(draw: st.DrawFn) -> BaseDistribution:
    kind = draw(st.sampled_from(["float", "float_log", "float_step", "int", "int_log", "int_step", "cat_num", "cat_str", "cat_mixed"]))
    if kind.startswith("float"):
        if kind == "float_log":
            low = draw(st.floats(1e-6, 1.0))
            return FloatDistribution(low, low * draw(st.floats(1.0, 1e4)), log=True)
        low = draw(st.floats(-100, 100))
        width = draw(st.floats(0.0, 50.0))
        if kind == "float_step":
            step = draw(st.sampled_from([0.1, 0.25, 0.5, 1.0]))
            return FloatDistribution(low, low + step * draw(st.integers(0, 20)), step=step)
        return FloatDistribution(low, low + width)
    if kind.startswith("int"):
        low = draw(st.integers(1 if kind == "int_log" else -50, 50))
        if kind == "int_step":
            step = draw(st.integers(1, 5))
            return IntDistribution(low, low + step * draw(st.integers(0, 10)), step=step)
        return IntDistribution(low, low + draw(st.integers(0, 200)), log=kind == "int_log")
    if kind == "cat_num":
        vals = draw(st.lists(st.one_of(st.integers(-5, 5), st.floats(-1e3, 1e3)), min_size=1, max_size=5, unique_by=float))
        return CategoricalDistribution(vals)
    if kind == "cat_str":
        return CategoricalDistribution(draw(st.lists(st.text("abc", min_size=1, max_size=3), min_size=1, max_size=4, unique=True)))
    return CategoricalDistribution([1, "a", True, None][: draw(st.integers(1, 4))])


def _value_in(draw: st.DrawFn, d: BaseDistribution) -> Any:
    if isinstance(d, CategoricalDistribution):
        return draw(st.sampled_from(d.choices))
    if isinstance(d, IntDistribution):
        return d.low + d.step * draw(st.integers(0, (d.high - d.low) // d.step))
    assert isinstance(d, FloatDistribution)
    if d.step is not None:
        return min(d.low + d.step * draw(st.integers(0, int(round((d.high - d.low) / d.step)))), d.high)
    if d.log:
        return min(max(math.exp(draw(st.floats(math.log(d.low), math.log(d.high)))), d.low), d.high)
    return draw(st.floats(d.low, d.high))


FIDELITY_ATTRS = st.one_of(
    st.just({}),
    st.just({"fidelity": {"n_params": 1e8}}),
    st.just({"n_params": 3e8}),
    st.just({"fidelity": {"n_params": float("nan")}}),
    st.just({"fidelity": "garbage"}),
    st.just({"fidelity": {"n_params": 1e8, "unknown_axis": 3}}),
)
STATES = st.sampled_from([TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING])


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(["lr", "batch_size", "layers", "x", "width"]), min_size=1, max_size=4, unique=True))
    dists = {n: draw(distributions()) for n in names}
    history = []
    for _ in range(draw(st.integers(0, 10))):
        keep = [n for n in names if draw(st.booleans()) or n == names[0]]
        params = {n: _value_in(draw, dists[n]) for n in keep}
        state = draw(STATES)
        value = draw(st.one_of(st.floats(-1e6, 1e6), st.just(float("inf")))) if state == TrialState.COMPLETE else None
        inter = {0: draw(st.one_of(st.floats(-10, 10), st.just(float("nan"))))} if state == TrialState.PRUNED else None
        history.append(create_trial(state=state, value=value, params=params, distributions={n: dists[n] for n in keep},
                                    user_attrs=draw(FIDELITY_ATTRS), intermediate_values=inter))
    return {
        "dists": dists,
        "history": history,
        "direction": draw(st.sampled_from(["minimize", "maximize"])),
        "n_trials": draw(st.integers(1, 3)),
        "conditional": draw(st.booleans()),
        "values": draw(st.lists(st.one_of(st.floats(-10, 10), st.just(float("nan"))), min_size=3, max_size=3)),
        "with_fidelity": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_sampler_never_raises_and_stays_inside_distributions(sc: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"fidelity": ("n_params",), "target": TARGET} if sc["with_fidelity"] else {}
    sampler = AutoLLMSampler(agent="classical", seed=sc["seed"], **kwargs)
    study = optuna.create_study(sampler=sampler, direction=sc["direction"])
    for t in sc["history"]:
        study.add_trial(t)
    dists: dict[str, BaseDistribution] = sc["dists"]
    values = iter(sc["values"])

    def objective(trial: optuna.Trial) -> float:
        for name, d in dists.items():
            trial._suggest(name, d)
        if sc["conditional"] and trial.number % 2:
            trial.suggest_float("extra", 0.0, 1.0)
        return next(values)

    # catch=() : any exception inside the study propagates and fails the test; and the sampler's own
    # safety net (log a warning, sample independently) must not be what kept it alive
    handler = _Collect()
    logging.getLogger("autollm_sampler").addHandler(handler)
    try:
        study.optimize(objective, n_trials=sc["n_trials"], catch=())
    finally:
        logging.getLogger("autollm_sampler").removeHandler(handler)
    bad = ("failed to propose", "could not infer", "falling back to the classical strategy")
    assert not [m for m in handler.messages if any(b in m for b in bad)], handler.messages
    # WAITING trials of the history run first (Optuna pops them), then new ones
    waiting = {t.number for t in study.trials[: len(sc["history"])] if sc["history"][t.number].state == TrialState.WAITING}
    new = [t for t in study.trials if t.number >= len(sc["history"]) or (t.number in waiting and t.state != TrialState.WAITING)]
    assert len(new) == sc["n_trials"]
    for t in new:
        assert t.state in (TrialState.COMPLETE, TrialState.FAIL)  # FAIL only from a NaN objective
        for name, d in dists.items():
            assert d._contains(d.to_internal_repr(t.params[name])), (name, d, t.params[name])
            if isinstance(d, IntDistribution):
                assert isinstance(t.params[name], int)
            elif isinstance(d, FloatDistribution):
                assert isinstance(t.params[name], float)
