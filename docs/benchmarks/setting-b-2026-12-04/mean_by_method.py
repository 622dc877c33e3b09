"""Setting B, every target pooled: the mean normalised regret of each method's recommendation after spending
k target-run equivalents (k = 1, 2, 3, 5), at the end, the final gap (%) and the cost spent, from an
episodes.csv that `autollm-sampler bench` wrote.

    python docs/benchmarks/setting-b-2026-12-04/mean_by_method.py docs/benchmarks/setting-b-2026-12-04/before/episodes.csv \
        docs/benchmarks/setting-b-2026-12-04/episodes.csv
"""

import csv
import sys
from collections import defaultdict

COLS = ["regret_k1", "regret_k2", "regret_k3", "regret_k5", "final_regret", "final_gap", "cost_spent"]

for path in sys.argv[1:]:
    by_method: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["setting"] == "B":
                for c in COLS:
                    by_method[row["method"]][c].append(float(row[c]))
    print(f"{path}\n| method | n | " + " | ".join(COLS) + " |")
    for method, cols in sorted(by_method.items()):
        n = len(cols["final_regret"])
        print(f"| {method} | {n} | " + " | ".join(f"{sum(cols[c]) / n:.3g}" for c in COLS) + " |")
