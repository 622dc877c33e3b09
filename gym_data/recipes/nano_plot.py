"""Plot how the optimum of the two project-made tasks drifts across fidelity, and print a Markdown summary.

Reads the shipped tables (``autollm_sampler/gym/tables/{nanolm_pretrain,nanogrpo}/``) and writes
``docs/nano_optimum_drift.png``. Large markers: the best seed-0 configuration of each cell; small markers:
the configurations whose outcome is within two run-to-run standard deviations of that best (the noise
measured by the repeat seeds), i.e. the ones the table cannot tell apart from the optimum.

Usage::

    .venv/bin/python gym_data/recipes/nano_plot.py [--out docs/nano_optimum_drift.png]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TABLES = ROOT / "autollm_sampler" / "gym" / "tables"


def _load(name: str, tables: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    with open(tables / name / "table.csv", newline="") as fh:
        rows: list[dict[str, Any]] = []
        for r in csv.DictReader(fh):
            rows.append({k: (v if k == "size" else float(v) if v not in ("True", "False") else v == "True")
                         for k, v in r.items()})
    return rows, json.loads((tables / name / "metadata.json").read_text())


def _cells(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple[float, ...], list[dict[str, Any]]]:
    out: dict[tuple[float, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["seed"] == 0:
            out[tuple(r[k] for k in keys)].append(r)
    return dict(sorted(out.items()))


def _near(group: list[dict[str, Any]], obj: str, sign: float, tol: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    best = min(group, key=lambda r: sign * r[obj])
    return best, [r for r in group if sign * (r[obj] - best[obj]) <= tol]


def plot(out: Path, tables: Path = TABLES) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pre, pre_meta = _load("nanolm_pretrain", tables)
    grpo, grpo_meta = _load("nanogrpo", tables)
    sd_pre = float(pre_meta["noise"].get("seed_sd_estimate", 0.0))
    sd_grpo = float(grpo_meta["noise"].get("seed_sd_estimate", 0.0))
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    lines = ["| task | cell | best configuration | best outcome | configs within 2 sd |", "|---|---|---|---|---|"]

    cells = _cells(pre, ("n_tokens", "n_params"))
    budgets = sorted({k[0] for k in cells})
    for d, color in zip(budgets, ("tab:blue", "tab:orange", "tab:green"), strict=False):
        xs, lr, bs, loss = [], [], [], []
        for (dd, n), group in cells.items():
            if dd != d:
                continue
            best, near = _near(group, "val_loss", 1.0, 2 * sd_pre)
            xs.append(n)
            lr.append(best["lr"])
            bs.append(best["batch_size"])
            loss.append(best["val_loss"])
            axes[0, 0].scatter([n] * len(near), [r["lr"] for r in near], s=12, color=color, alpha=0.35)
            axes[0, 1].scatter([n] * len(near), [r["batch_size"] for r in near], s=12, color=color, alpha=0.35)
            lines.append(f"| nanolm-pretrain | N={n:.0f}, D={d:.0f} | lr={best['lr']:g}, bs={best['batch_size']:g} "
                         f"| {best['val_loss']:.4f} | {len(near)} |")
            # loss vs lr at the best batch size
            curve = sorted((r["lr"], r["val_loss"]) for r in group if r["batch_size"] == best["batch_size"])
            axes[0, 3].plot([c[0] for c in curve], [c[1] for c in curve], marker=".", color=color,
                            alpha=0.4 + 0.6 * (n == max(k[1] for k in cells)), label=None)
        axes[0, 0].plot(xs, lr, "o-", color=color, ms=8, label=f"D={d / 1e3:.0f}K tokens")
        axes[0, 1].plot(xs, bs, "o-", color=color, ms=8, label=f"D={d / 1e3:.0f}K tokens")
        axes[0, 2].plot(xs, loss, "o-", color=color, ms=8, label=f"D={d / 1e3:.0f}K tokens")
    for ax, title in zip(axes[0, :3], ("best peak lr", "best batch size (seqs of 64 B)", "best val loss (nats/byte)"), strict=False):
        ax.set_xscale("log")
        ax.set_xlabel("non-embedding params N")
        ax.set_title(f"nanolm-pretrain: {title}")
        ax.legend(fontsize=8)
    axes[0, 0].set_yscale("log")
    axes[0, 1].set_yscale("log", base=2)
    axes[0, 3].set_xscale("log")
    axes[0, 3].set_xlabel("peak lr")
    axes[0, 3].set_title("val loss vs lr at each cell's best bs")

    gcells = _cells(grpo, ("n_params",))
    params = (("lr", "log"), ("kl_coef", "log"), ("group_size", "log2"), ("temperature", "linear"))
    for (n,), group in gcells.items():
        best, near = _near(group, "accuracy", -1.0, 2 * sd_grpo)
        lines.append(f"| nanogrpo | N={n:.0f} | lr={best['lr']:g}, kl={best['kl_coef']:g}, G={best['group_size']:g}, "
                     f"T={best['temperature']:g} | {best['accuracy']:.3f} (base {best['base_accuracy']:.3f}) "
                     f"| {len(near)} |")
        for ax, (p, _) in zip(axes[1], params, strict=False):
            ax.scatter([n] * len(near), [r[p] for r in near], s=12, color="tab:purple", alpha=0.3)
            ax.scatter([n], [best[p]], s=70, color="tab:red", zorder=3)
    ns = sorted(k[0] for k in gcells)
    for ax, (p, scale) in zip(axes[1], params, strict=False):
        best_vals = [_near(gcells[(n,)], "accuracy", -1.0, 0.0)[0][p] for n in ns]
        ax.plot(ns, best_vals, "-", color="tab:red")
        ax.set_xscale("log")
        if scale == "log":
            ax.set_yscale("log")
        elif scale == "log2":
            ax.set_yscale("log", base=2)
        ax.set_xlabel("non-embedding params N")
        ax.set_title(f"nanogrpo: best {p}")
    from matplotlib.ticker import NullFormatter

    for ax in axes.flat:
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.suptitle("Optimum drift across fidelity (large: best seed-0 run; faint: within 2 run-to-run sd of it)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    noise = (f"\nnoise: pretrain seed sd ~ {sd_pre:.4f} nats ({pre_meta['noise'].get('pairs', 0)} pairs); "
             f"grpo seed sd ~ {sd_grpo:.4f} accuracy ({grpo_meta['noise'].get('pairs', 0)} pairs)")
    return "\n".join(lines) + noise


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="plot the optimum drift of the nano tasks")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "nano_optimum_drift.png")
    ap.add_argument("--tables", type=Path, default=TABLES, help="folder holding nanolm_pretrain/ and nanogrpo/")
    args = ap.parse_args(argv)
    print(plot(args.out, args.tables))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
