"""The ``autollm-sampler`` command line.

Sub-commands are contributed by the modules that own them, each through an ``add_parser(subparsers)``
function, and imported only when the command line is built:

* ``suggest`` / ``explain``: :mod:`autollm_sampler.integrations.cli` (agent only, no gym);
* ``gym ...``: :mod:`autollm_sampler.gym._cli`;
* ``bench``: :mod:`autollm_sampler.benchmark._cli`.

Exit codes: 0 success, 2 bad input (with a message naming the file, line and field), 1 other failures.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from autollm_sampler.exceptions import AutoLLMSamplerError

__all__ = ["main", "build_parser"]

_MODULES = (
    "autollm_sampler.integrations.cli",
    "autollm_sampler.gym._cli",
    "autollm_sampler.benchmark._cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autollm-sampler",
        description="A trained research agent that proposes expensive LLM experiment configurations "
        "from cheap multi-fidelity evidence.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level to stderr")
    from autollm_sampler import __version__

    parser.add_argument("--version", action="version", version=f"autollm-sampler {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _MODULES:
        try:
            module = importlib.import_module(mod)
        except ImportError as exc:  # a module not written yet, or an optional dependency missing
            logging.getLogger(__name__).debug("skipping %s: %s", mod, exc)
            continue
        module.add_parser(sub)
    _verbose_everywhere(sub)
    return parser


def _verbose_everywhere(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``-v`` is accepted after any sub-command too (``autollm-sampler suggest ... -v``), with the same effect."""
    for p in set(sub.choices.values()):
        if not any("-v" in a.option_strings for a in p._actions):
            p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                           help="log at INFO level to stderr")
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                _verbose_everywhere(a)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AutoLLMSamplerError as exc:
        print(f"autollm-sampler: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
