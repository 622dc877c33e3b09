"""Plot how the optimum of the v2 project-made tasks drifts across fidelity, and print their informativeness.

Reads the shipped tables through the package (``nano.build_grpo_v2()``, ``nano.build_pretrain_v2()``) and
writes ``docs/nano_v2_optimum_drift.png``: one row per task, one panel per parameter (the best seed-0
configuration of each cell, large markers joined by a line per level of the second fidelity axis; faint
markers: the configurations within two run-to-run sd of that best, which the table cannot tell apart from
it) and a last panel with the best outcome. Then prints a Markdown table per task and the figures of
``nano.informativeness``.

Usage::

    .venv/bin/python gym_data/recipes/nano_v2_plot.py [--out docs/nano_v2_optimum_drift.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# task id -> (second fidelity axis, parameters with their y scale)
TASKS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "nanolm-pretrain-v2": ("n_tokens", (("lr", "log"), ("batch_size", "log2"), ("warmup_frac", "linear"))),
    "nanogrpo-v2": ("rl_updates", (("lr", "log"), ("kl_coef", "symlog"), ("group_size", "log2"),
                                   ("temperature", "linear"), ("clip_eps", "linear"))),
}
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def _fmt(x: Any) -> str:
    return f"{float(x):.3g}"


def plot(out: Path, tasks: list[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from autollm_sampler.gym.recipes import nano

    builders = {nano.PRETRAIN2_ID: nano.build_pretrain_v2, nano.GRPO2_ID: nano.build_grpo_v2}
    width = max(len(TASKS[t][1]) for t in tasks) + 1
    fig, axes = plt.subplots(len(tasks), width, figsize=(3.4 * width, 3.3 * len(tasks)), squeeze=False)
    text: list[str] = []
    for row, tid in enumerate(tasks):
        task = builders[tid]()
        info = nano.informativeness(tid)
        sd = info["largest"]["noise_sd"]
        axis2, params = TASKS[tid]
        sign = 1.0 if task.direction == "minimize" else -1.0
        text += [f"\n#### {tid}", "", "| cell | best configuration | best | p90 | configs within 2 sd |",
                 "|---|---|---:|---:|---:|"]
        levels = sorted({c.fidelity[axis2] for c in task.cells})
        for li, lev in enumerate(levels):
            cells = sorted((c for c in task.cells if c.fidelity[axis2] == lev), key=lambda c: c.fidelity["n_params"])
            ns = [c.fidelity["n_params"] for c in cells]
            bests = [c.configs[c.best_index] for c in cells]
            for c, b in zip(cells, bests, strict=True):
                near = [cfg for cfg, v in zip(c.configs, c.values, strict=True)
                        if sign * (v - c.optimum) <= 2 * sd]
                text.append(f"| {c.name} | {', '.join(f'{p}={_fmt(b[p])}' for p, _ in params)} | "
                            f"{c.optimum:.4g} | {c.p90:.4g} | {len(near)} of {len(c)} |")
                for ax, (p, _) in zip(axes[row], params, strict=False):
                    ax.scatter([c.fidelity["n_params"]] * len(near), [cfg[p] for cfg in near], s=10,
                               color=COLORS[li], alpha=0.25)
            for ax, (p, _) in zip(axes[row], params, strict=False):
                ax.plot(ns, [b[p] for b in bests], "o-", color=COLORS[li], ms=7, label=f"{axis2}={lev:g}")
            axes[row, len(params)].plot(ns, [c.optimum for c in cells], "o-", color=COLORS[li],
                                        label=f"{axis2}={lev:g}")
        for ax, (p, scale) in zip(axes[row], params, strict=False):
            ax.set_title(f"{tid}: best {p}", fontsize=9)
            if scale == "log":
                ax.set_yscale("log")
            elif scale == "log2":
                ax.set_yscale("log", base=2)
            elif scale == "symlog":
                ax.set_yscale("symlog", linthresh=1e-3)
        last = axes[row, len(params)]
        last.set_title(f"{tid}: best {task.metadata.objective}", fontsize=9)
        for ax in axes[row, len(params) + 1:]:
            ax.axis("off")
        for ax in axes[row, : len(params) + 1]:
            ax.set_xscale("log")
            ax.set_xlabel("non-embedding params N", fontsize=8)
            ax.xaxis.set_minor_formatter(NullFormatter())
        axes[row, 0].legend(fontsize=7)
        top = info["largest"]
        text += ["", f"largest cell {top['cell']}: best {top['best']:.4g}, p90 {top['p90']:.4g}, median "
                 f"{top['median']:.4g}; noise sd {sd:.3g} over the table ({top['noise_pairs']} seed pairs, median "
                 f"pair), {top['cell_noise_sd']:.3g} in this cell; p90 - best = {top['p90_gap']:.3g} = "
                 f"{top['p90_gap_over_noise']:.1f} sd; median - best = {top['median_gap_over_noise']:.1f} sd"]
        for nb in info["neighbours"]:
            text.append(f"- neighbour {nb['cell']} (one step down {nb['axis']}): best differs on "
                        f"{', '.join(nb['differs_on']) or 'nothing'}; it scores {nb['its_value_in_largest']:.4g} "
                        f"in the largest cell, {nb['loss_in_noise_sd']:.2f} sd from its best")
        for p, e in info["edges"].items():
            text.append(f"- {p}: best at the edge of [{_fmt(e['range'][0])}, {_fmt(e['range'][1])}] in "
                        f"{len(e['cells_at_edge'])} of {len(task.cells)} cells")
    fig.suptitle("v2 project-made tasks: optimum drift across fidelity (large: best seed-0 run; faint: within "
                 "2 run-to-run sd of it)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="plot the optimum drift of the v2 nano tasks")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "nano_v2_optimum_drift.png")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    args = ap.parse_args(argv)
    print(plot(args.out, args.tasks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
