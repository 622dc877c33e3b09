"""``autollm-sampler suggest`` and ``autollm-sampler explain``: the agent for in-house sweep scripts.

::

    autollm-sampler suggest --space SPACE --history HISTORY --target AXIS=VALUE[,AXIS=VALUE] [-n N]
                            [--seed S] [--agent default|classical|PATH|llm:DIR] [--pretty] [-v]

prints a JSON list of proposals, each ``{"params": {...}, "predicted_value": float, "predicted_std": float,
"rationale": str}`` (the two predictions are ``null`` when the agent has no basis for one).

* SPACE (``.yaml``/``.yml`` or ``.json``): ``{"direction": "minimize"|"maximize", "params": {NAME: {"type":
  "float"|"int", "low": .., "high": .., "log": bool, "step": ..} | {"type": "categorical", "choices": [..]} |
  {"type": "simplex", "components": [..]}}}``. Any parameter may add ``"role": ROLE`` (one of lr,
  batch_size, weight_decay, warmup, width, depth, heads, mlp_ratio, mixture, kl_coef, temperature,
  group_size, dropout, bias, other) to say what it is; without it the role is read from the name (``explain`` shows what was read).
* HISTORY (``.jsonl`` or ``.csv``): one trial a line, ``{"params": {...}, "fidelity": {AXIS: number},
  "value": number, "state": "complete"|"failed"|"pruned"|"running"}``; in CSV, columns ``param:NAME`` (or
  bare names), ``fidelity:AXIS``, ``value``, ``state``, ``cost``, ``id``, and a mixture one column per
  component, ``param:NAME.COMPONENT``. A trial without fidelity is a target trial. A NaN or infinite
  value records the run as failed (in every file type, as in the Python API). An empty file is a valid,
  empty history.

A bad file exits with code 2 and a message naming the file, the line and the field.
``explain`` takes the same options and prints the evidence and the proposals in words.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from autollm_sampler._io import JSONInputError, loads_json, path_name, read_text_file, short_repr
from autollm_sampler.exceptions import InvalidHistoryError, InvalidSpaceError, InvalidTrialError
from autollm_sampler.history import History, Trial, check_params, fidelity_key, read_history
from autollm_sampler.integrations._common import resolve_agent
from autollm_sampler.integrations._explain import describe_history, describe_proposals, fmt_fidelity
from autollm_sampler.space import MAX_ERRORS_SHOWN, SearchSpace, check_plain_data

__all__ = ["add_parser", "load_space", "load_history", "parse_target", "suggest"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- SPACE
def _cut(text: str, n: int = 300) -> str:
    """``text`` cut to ``n`` characters: validation messages can quote the input (a megabyte-long type name)."""
    return text if len(text) <= n else text[: n - 3] + "..."


def _line_of(root: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """1-based line of the node at ``loc`` in a composed YAML/JSON document (deepest node found)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
        if node is None:
            break
    return line


class _SpaceLoader(yaml.SafeLoader):
    """Safe YAML without aliases (``*name``: an alias bomb expands a few hundred bytes into gigabytes), without
    keys given twice in one mapping, and with integers too long to read reported at their line."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a space file; write the value out", event.start_mark
            )
        return super().compose_node(parent, index)  # type: ignore[no-any-return]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                dup = key in seen
                seen.add(key)
            except TypeError:
                dup = False  # an unhashable key: the constructor below says so
            if dup:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {short_repr(key)} appears twice in one mapping; give each field once",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)  # type: ignore[no-any-return]
        except ValueError:
            raise yaml.constructor.ConstructorError(
                None, None, f"the integer {short_repr(node.value)} is too large for a number", node.start_mark
            ) from None


_SpaceLoader.add_constructor("tag:yaml.org,2002:int", _SpaceLoader.construct_yaml_int)


def _yaml_problem(path: str, exc: yaml.YAMLError) -> InvalidSpaceError:
    mark = getattr(exc, "problem_mark", None)
    where = f", line {mark.line + 1}" if mark is not None else ""
    problem = str(getattr(exc, "problem", None) or exc)
    problem = problem if len(problem) <= 300 else problem[:297] + "..."
    return InvalidSpaceError(f"{path}{where}: not valid YAML ({problem})")


def load_space(path: str | os.PathLike[str]) -> SearchSpace:
    """Read a SPACE file (YAML or JSON, UTF-8). YAML aliases and repeated keys are refused.

    Raises:
        InvalidSpaceError: naming the file, the line and the field, bounded in size.
    """
    text = read_text_file(path, InvalidSpaceError, "space")
    name = path_name(path)
    suffix = Path(path).suffix.lower()
    data: Any
    if suffix == ".json":
        try:
            data = loads_json(text)
        except JSONInputError as exc:
            jline = exc.lineno if exc.lineno else 1
            raise InvalidSpaceError(f"{name}, line {jline}: {exc.msg}") from None
    else:
        try:
            data = yaml.load(text, Loader=_SpaceLoader)  # noqa: S506 (a safe loader)
        except yaml.YAMLError as exc:
            raise _yaml_problem(name, exc) from None
        except RecursionError:
            raise InvalidSpaceError(f"{name}: not readable: the YAML is nested too deeply") from None
    if not isinstance(data, Mapping):
        raise InvalidSpaceError(f"{name}, line 1: the space must be a mapping with 'params' (and 'direction'), got {type(data).__name__}")
    if "params" not in data:
        raise InvalidSpaceError(f"{name}, line 1, field 'params': missing; list the parameters under 'params'")
    try:
        root = yaml.compose(text, Loader=_SpaceLoader)  # for line numbers (JSON is YAML)
    except (yaml.YAMLError, RecursionError):
        root = None
    try:
        check_plain_data(data)
    except InvalidSpaceError as exc:
        raise InvalidSpaceError(f"{name}: {exc}") from None
    try:
        return SearchSpace.model_validate(dict(data))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        msgs = []
        for err in errors[:MAX_ERRORS_SHOWN]:
            loc = [x for x in err.get("loc", ()) if x not in ("float", "int", "categorical", "simplex")]
            line = _line_of(root, loc)
            field = short_repr(".".join(str(x) for x in loc) or "(top level)", 120)
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")  # pydantic's prefix for our checks
            msgs.append(f"{name}, line {line}, field {field}: {_cut(msg)} (got {short_repr(err.get('input'))})")
        if len(errors) > MAX_ERRORS_SHOWN:
            msgs.append(f"and {len(errors) - MAX_ERRORS_SHOWN} more")
        raise InvalidSpaceError("; ".join(msgs)) from None


# ---------------------------------------------------------------------- HISTORY
def load_history(path: str | Path | None, space: SearchSpace, target: Mapping[str, float]) -> History:
    """Read a HISTORY file (JSONL, CSV or JSON; :func:`~autollm_sampler.history.read_history`) and check it.

    Every trial meets :func:`~autollm_sampler.history.check_params`: values that cannot be read are an
    error in any trial; target-fidelity trials must also fit the space (cheaper trials may use other numbers,
    carried over by value, and may leave parameters out).

    Raises:
        InvalidHistoryError / InvalidTrialError: naming the file, the line and the field.
    """
    if path is None:
        return History(fidelity_axes=tuple(target))
    history, wheres = read_history(path)
    src = path_name(path)
    axes = tuple(history.fidelity_axes)
    if axes and not target:
        raise InvalidHistoryError(f"{src}: the history has fidelity axes {short_repr(list(axes), 200)}; pass --target with a value for each")
    missing = [a for a in axes if a not in target]
    extra = [a for a in target if axes and a not in axes]
    if missing or extra:
        raise InvalidHistoryError(
            f"--target {short_repr(dict(target), 200)} does not match the fidelity axes {short_repr(list(axes), 200)} of {src} "
            f"(missing {short_repr(missing, 200)}, unexpected {short_repr(extra, 200)})"
        )
    tkey = fidelity_key(target)
    _warn_near_target(history, target, src)
    checked = History(fidelity_axes=tuple(target))
    for t, where in zip(history.trials, wheres, strict=True):
        t = _check_trial(t, space, tkey, where)
        if target and set(t.fidelity) != set(target):
            # a trial without fidelity is a target run, and an axis it leaves out takes the target's value:
            # the agent then sees it at the target fidelity (it reads only trials there as target runs)
            t = t.model_copy(update={"fidelity": {**dict(target), **t.fidelity}})
        checked.add(t)
    return checked


def _warn_near_target(history: History, target: Mapping[str, float], src: str) -> None:
    """Warn when trials sit within 1% of the target without matching it (a rounded --target, usually)."""
    tkey = fidelity_key(target)
    for key in history.cells():
        if not key or key == tkey:
            continue
        fid = dict(key)
        if all(a in fid and math.isclose(fid[a], v, rel_tol=0.01) for a, v in target.items()):
            logger.warning(
                "%s: trials at %s are within 1%% of --target %s but not equal, so they count as a cheaper cell; "
                "give the target with the history's exact values if they are target runs",
                src, fid, dict(target),
            )


def _check_trial(t: Trial, space: SearchSpace, tkey: Any, where: str) -> Trial:
    """The one rule of :func:`~autollm_sampler.history.check_params`, for every trial (cheap or target)."""
    try:
        check_params(space, t.params, at_target=not t.fidelity or fidelity_key(t.fidelity) == tkey)
    except InvalidTrialError as exc:
        raise InvalidTrialError(f"{where}, {exc}") from None
    return t


def parse_target(text: str | Sequence[str] | None) -> dict[str, float]:
    """``"n_params=7e9,n_tokens=1e11"`` (or several such strings) -> ``{"n_params": 7e9, ...}``.

    Raises:
        InvalidHistoryError: naming the bad item and the expected form.
    """
    if text is None:
        return {}
    items = [text] if isinstance(text, str) else list(text)
    out: dict[str, float] = {}
    for chunk in items:
        for item in chunk.split(","):
            item = item.strip()
            if not item:
                continue
            axis, sep, val = item.partition("=")
            if not sep or not axis.strip():
                raise InvalidHistoryError(f"--target: {item!r} is not AXIS=VALUE (e.g. --target n_params=7e9,n_tokens=1e11)")
            try:
                v = float(val)
            except ValueError:
                raise InvalidHistoryError(f"--target: value of {axis.strip()!r} is {val!r}, not a number") from None
            if not math.isfinite(v):
                raise InvalidHistoryError(f"--target: value of {axis.strip()!r} is {val!r}; give a finite number")
            if axis.strip() in out:
                raise InvalidHistoryError(f"--target: axis {axis.strip()!r} is given twice; give each axis once")
            out[axis.strip()] = v
    return out


def _seed(text: str) -> int:
    """``--seed``: an integer >= 0 (numpy refuses negative seeds)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} is negative; give an integer >= 0")
    return v


# ---------------------------------------------------------------------- commands
def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item"):  # numpy scalars
        return _jsonable(x.item())
    return x


def suggest(
    space: SearchSpace, history: History, target: Mapping[str, float], *, n: int = 1, seed: int | None = None, agent: str = "default"
) -> list[dict[str, Any]]:
    """The proposals as plain data (what ``suggest`` prints)."""
    pending = [t.params for t in history.trials if t.state == "running"]
    done = History(fidelity_axes=history.fidelity_axes, trials=[t for t in history.trials if t.state != "running"])
    props = resolve_agent(agent).propose(done, space, dict(target), n=n, seed=seed, pending=pending)
    return [
        {
            "params": _jsonable(p.params),
            "predicted_value": _jsonable(float(p.predicted_value)),
            "predicted_std": _jsonable(float(p.predicted_std)),
            "rationale": p.rationale,
        }
        for p in props
    ]


def _load_all(args: argparse.Namespace) -> tuple[SearchSpace, History, dict[str, float]]:
    if args.n < 1:
        raise InvalidHistoryError(f"-n is {args.n}; ask for at least one proposal")
    space = load_space(args.space)
    target = parse_target(args.target)
    history = load_history(args.history, space, target)
    return space, history, target


def _cmd_suggest(args: argparse.Namespace) -> int:
    space, history, target = _load_all(args)
    if logger.isEnabledFor(logging.INFO):  # -v: what was read, on stderr (stdout stays the JSON)
        for line in describe_history(history, space, target):
            logger.info("%s", line.strip())
        logger.info("target: %s; agent: %s", fmt_fidelity(target) if target else "(no fidelity given)", args.agent)
    out = suggest(space, history, target, n=args.n, seed=args.seed, agent=args.agent)
    sys.stdout.write(json.dumps(out, indent=2 if args.pretty else None) + "\n")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    space, history, target = _load_all(args)
    pending = [t.params for t in history.trials if t.state == "running"]
    done = History(fidelity_axes=history.fidelity_axes, trials=[t for t in history.trials if t.state != "running"])
    props = resolve_agent(args.agent).propose(done, space, target, n=args.n, seed=args.seed, pending=pending)
    lines = describe_history(history, space, target) + describe_proposals(props, target)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, metavar="SPACE", help="search space, YAML or JSON")
    p.add_argument("--history", metavar="HISTORY", default=None, help="earlier trials, JSONL or CSV (may be empty)")
    p.add_argument(
        "--target", metavar="AXIS=VALUE[,AXIS=VALUE]", action="append", default=None,
        help="the target fidelity, one value per fidelity axis of the history",
    )
    p.add_argument("-n", type=int, default=1, help="number of proposals (default 1)")
    p.add_argument("--seed", type=_seed, default=None, help="random seed for reproducible proposals (an integer >= 0)")
    p.add_argument("--agent", default="default", metavar="default|classical|PATH|llm:DIR", help="which agent proposes (default: the shipped model; a text-LLM checkpoint folder or llm:<local model folder> also work)")


def _plain(doc: str | None) -> str:
    """A module docstring as terminal help: no reST literal markup, no ``::`` block marker."""
    import re

    text = re.sub(r"``(.+?)``", r"\1", doc or "", flags=re.S)
    return re.sub(r"\n::\n", "\n", text).strip() + "\n"


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``suggest`` and ``explain`` to the ``autollm-sampler`` command line."""
    p = subparsers.add_parser("suggest", help="propose the next configurations as JSON", description=_plain(__doc__),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _common_args(p)
    p.add_argument("--pretty", action="store_true", help="indent the JSON output")
    p.set_defaults(func=_cmd_suggest)
    e = subparsers.add_parser(
        "explain", help="explain the evidence and the next proposals in words",
        description="Print, in words, what the history shows (cells, best runs, the trend of the optimum towards "
        "the target, the roles read from the parameter names) and the next proposals with their predicted "
        "outcome and reasons. Takes the same files and options as `suggest`; see `autollm-sampler suggest "
        "--help` for the SPACE and HISTORY formats.")
    _common_args(e)
    e.set_defaults(func=_cmd_explain)
