"""Search spaces: JSON round trip, unit-cube mapping, and clear errors on bad spaces and bad values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autollm_sampler.exceptions import InvalidSpaceError, InvalidTrialError
from autollm_sampler.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    SearchSpace,
    SimplexParam,
    infer_role,
    project_unit,
)

names = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def float_params(draw: Any) -> FloatParam:
    log = draw(st.booleans())
    if log:
        low = draw(st.floats(min_value=1e-8, max_value=1e3))
        high = low * draw(st.floats(min_value=1.0, max_value=1e4))
        return FloatParam(low=low, high=high, log=True)
    low = draw(finite)
    high = low + draw(st.floats(min_value=0.0, max_value=1e6))
    step = draw(st.one_of(st.none(), st.floats(min_value=1e-3, max_value=10.0)))
    return FloatParam(low=low, high=high, step=step)


@st.composite
def int_params(draw: Any) -> IntParam:
    low = draw(st.integers(min_value=1, max_value=1000))
    high = low + draw(st.integers(min_value=0, max_value=10_000))
    if draw(st.booleans()):
        return IntParam(low=low, high=high, log=True)
    return IntParam(low=low, high=high, step=draw(st.integers(min_value=1, max_value=7)))


choice_values = st.one_of(st.booleans(), st.integers(-1000, 1000), finite, st.text(min_size=1, max_size=6))
categorical_params = st.lists(choice_values, min_size=1, max_size=6).filter(
    lambda cs: len({(type(c) is bool, float(c) if isinstance(c, (int, float)) and not isinstance(c, bool) else c)
                    for c in cs}) == len(cs)
).map(lambda cs: CategoricalParam(choices=tuple(cs)))
simplex_params = st.lists(names, min_size=2, max_size=6, unique=True).map(lambda cs: SimplexParam(components=tuple(cs)))
params = st.one_of(float_params(), int_params(), categorical_params, simplex_params)
spaces = st.builds(
    lambda ps, d: SearchSpace(params=ps, direction=d),
    st.dictionaries(names, params, min_size=1, max_size=5),
    st.sampled_from(["minimize", "maximize"]),
)


@settings(max_examples=60, deadline=None)
@given(space=spaces)
def test_space_json_round_trip(space: SearchSpace) -> None:
    again = SearchSpace.from_json(space.to_json())
    assert again == space
    assert again.width == space.width and again.roles() == space.roles()


@settings(max_examples=60, deadline=None)
@given(space=spaces, seed=st.integers(0, 2**32 - 1))
def test_samples_validate_and_map_into_the_unit_cube(space: SearchSpace, seed: int) -> None:
    rng = np.random.default_rng(seed)
    configs = [space.sample(rng) for _ in range(4)]
    for cfg in configs:
        norm = space.validate_params(cfg)
        u = space.to_unit(norm)
        assert u.shape == (space.width,)
        assert np.all((u >= 0.0) & (u <= 1.0))
        # from_unit snaps back onto a valid configuration
        space.validate_params(space.from_unit(u))
    many = space.to_unit_many(configs)
    assert np.array_equal(many, np.stack([space.to_unit(c) for c in configs]))


@settings(max_examples=40, deadline=None)
@given(space=spaces, seed=st.integers(0, 2**32 - 1))
def test_finite_spaces_round_trip_through_the_unit_cube(space: SearchSpace, seed: int) -> None:
    finite_params = {n: p for n, p in space.params.items() if isinstance(p, CategoricalParam)}
    if not finite_params:
        return
    sub = SearchSpace(params=finite_params)
    cfg = sub.sample(np.random.default_rng(seed))
    assert sub.config_key(sub.from_unit(sub.to_unit(cfg))) == sub.config_key(cfg)


def test_bool_and_int_choices_stay_distinct() -> None:
    ints = CategoricalParam(choices=(0, 1))
    bools = CategoricalParam(choices=(False, True))
    assert bools.index_of("b", True) == 1
    with pytest.raises(InvalidTrialError, match="not one of the choices"):
        ints.index_of("n", True)
    mixed = CategoricalParam(choices=(1, True))
    assert mixed.index_of("m", 1) == 0 and mixed.index_of("m", True) == 1


# ----------------------------------------------------------------------------------- bad values
@pytest.fixture()
def space() -> SearchSpace:
    return SearchSpace.from_dict({
        "params": {
            "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
            "layers": {"type": "int", "low": 2, "high": 48},
            "bs": {"type": "categorical", "choices": [64, 128, 256]},
            "mix": {"type": "simplex", "components": ["web", "code", "math"]},
        }
    })


def _ok() -> dict[str, Any]:
    return {"lr": 1e-3, "layers": 12, "bs": 128, "mix": {"web": 0.5, "code": 0.3, "math": 0.2}}


@settings(max_examples=30, deadline=None)
@given(bad=st.sampled_from([math.nan, math.inf, -math.inf]), field=st.sampled_from(["lr", "layers"]))
def test_nan_or_inf_values_are_refused_naming_the_parameter(bad: float, field: str) -> None:
    space = SearchSpace(params={"lr": FloatParam(low=1e-5, high=1e-1, log=True), "layers": IntParam(low=2, high=48)})
    cfg: dict[str, Any] = {"lr": 1e-3, "layers": 12, field: bad}
    with pytest.raises(InvalidTrialError) as err:
        space.validate_params(cfg)
    assert repr(field) in str(err.value) and "finite" in str(err.value)


def test_unknown_parameter_is_named(space: SearchSpace) -> None:
    with pytest.raises(InvalidTrialError, match=r"unknown parameter\(s\) \['dropout'\]"):
        space.validate_params({**_ok(), "dropout": 0.1})


def test_missing_parameter_is_named(space: SearchSpace) -> None:
    cfg = _ok()
    del cfg["bs"]
    with pytest.raises(InvalidTrialError, match=r"missing parameter\(s\) \['bs'\]"):
        space.validate_params(cfg)


@settings(max_examples=40, deadline=None)
@given(lr=st.one_of(st.floats(min_value=0.11, max_value=1e6), st.floats(min_value=-1e6, max_value=9e-6)))
def test_out_of_range_float_names_value_and_bounds(lr: float) -> None:
    space = SearchSpace(params={"lr": FloatParam(low=1e-5, high=1e-1, log=True)})
    with pytest.raises(InvalidTrialError) as err:
        space.validate_params({"lr": lr})
    msg = str(err.value)
    assert "'lr'" in msg and "outside" in msg and repr(lr) in msg


def test_out_of_range_int_and_unknown_choice(space: SearchSpace) -> None:
    with pytest.raises(InvalidTrialError, match=r"'layers': value 60 is outside \[2, 48\]"):
        space.validate_params({**_ok(), "layers": 60})
    with pytest.raises(InvalidTrialError, match=r"'bs': value 100 is not one of the choices \[64, 128, 256\]"):
        space.validate_params({**_ok(), "bs": 100})
    with pytest.raises(InvalidTrialError, match="not an integer"):
        space.validate_params({**_ok(), "layers": 12.5})


@settings(max_examples=60, deadline=None)
@given(w=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=3, max_size=3))
def test_simplex_must_sum_to_one(w: list[float]) -> None:
    p = SimplexParam(components=("web", "code", "math"))
    value = dict(zip(p.components, w, strict=True))
    total = sum(w)
    if abs(total - 1.0) > 1e-3:
        with pytest.raises(InvalidTrialError) as err:
            p.validate_value("mix", value)
        assert "'mix'" in str(err.value) and "sum to" in str(err.value)
    else:
        assert abs(sum(p.validate_value("mix", value).values()) - total) < 1e-9


def test_simplex_bad_components_and_weights(space: SearchSpace) -> None:
    with pytest.raises(InvalidTrialError, match=r"unknown component\(s\) \['books'\]"):
        space.validate_params({**_ok(), "mix": {"web": 0.5, "books": 0.5}})
    with pytest.raises(InvalidTrialError, match="weight of 'code' is -0.2, outside"):
        space.validate_params({**_ok(), "mix": {"web": 1.0, "code": -0.2, "math": 0.2}})
    with pytest.raises(InvalidTrialError, match="mix.web"):
        space.validate_params({**_ok(), "mix": {"web": math.nan, "code": 0.5, "math": 0.5}})
    with pytest.raises(InvalidTrialError, match="mapping"):
        space.validate_params({**_ok(), "mix": [0.5, 0.5]})


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"lr": {"type": "float", "low": 1.0, "high": 0.1}}, "low=1.0 is greater than high=0.1"),
        ({"lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "log=True needs low > 0"),
        ({"lr": {"type": "float", "low": 0.0, "high": math.inf}}, "not finite"),
        ({"bs": {"type": "categorical", "choices": []}}, "choices is empty"),
        ({"bs": {"type": "categorical", "choices": [1, 1.0]}}, "duplicates"),
        ({"m": {"type": "simplex", "components": ["a"]}}, "at least two components"),
        ({"x": {"type": "float", "low": 0, "high": 1, "foo": 3}}, "foo"),
        ({"x": {"type": "quantum"}}, "x"),
    ],
)
def test_bad_space_definitions_name_the_field(spec: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidSpaceError) as err:
        SearchSpace.from_dict({"params": spec})
    assert needle in str(err.value)
    assert next(iter(spec)) in str(err.value)


def test_space_from_bad_json() -> None:
    with pytest.raises(InvalidSpaceError, match="not valid JSON"):
        SearchSpace.from_json("{params: ")


def test_roles_are_inferred_from_names() -> None:
    assert infer_role("peak_lr") == "lr"
    assert infer_role("mlp_ratio_3") == "mlp_ratio"
    assert infer_role("heads_0") == "heads"
    assert infer_role("n_layers") == "depth"
    assert infer_role("embed_dim") == "width"
    assert infer_role("colour") == "other"


def test_project_unit_carries_values_between_shifted_grids() -> None:
    small = SearchSpace(params={"heads": CategoricalParam(choices=(4, 8, 12))})
    large = SearchSpace(params={"heads": CategoricalParam(choices=(8, 16, 20))})
    # a value that exists in both grids keeps its identity; one between grid points keeps its magnitude
    assert large.from_unit(project_unit({"heads": 16}, small, large)) == {"heads": 16}
    assert float(project_unit({"heads": 12}, small, large)[0]) == pytest.approx(1 / 3)
    assert float(project_unit({"heads": 4}, small, large)[0]) == 0.0  # clipped to the new range
