"""Draw `bench/recipe.py` curves (JSON lines) as one standalone SVG, and print their summary table.

    python bench/recipe_plot.py --metric val_loss --out bench/img/charlm-recipe.svg runs/*.jsonl

One line per file (its label: the file name without .jsonl), the metric against training CPU-minutes.
The table gives, per file, the parameter count, steps, the metric's last and best value.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobkit.collect.plots import Series, color, line_chart, standalone  # noqa: E402


def read(path: Path) -> tuple[dict, list[dict]]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines[0], lines[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--metric", default="val_loss")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--title", default="")
    ap.add_argument("--higher-is-better", action="store_true")
    args = ap.parse_args()
    series, labels = [], []
    print(f"| setting | parameters | steps | CPU-minutes | {args.metric} at the end | best |")
    print("|---|---|---|---|---|---|")
    for i, path in enumerate(args.files):
        header, points = read(path)
        label = path.name.removesuffix(".jsonl")
        pts = [(p["minutes"], p[args.metric]) for p in points if args.metric in p]
        if not pts:
            continue
        series.append(Series(label, pts, color(i), dots=True))
        labels.append(label)
        best = (max if args.higher_is_better else min)(v for _, v in pts)
        print(f"| {label} | {header.get('parameters') or '—'} | {points[-1]['step']} | {points[-1]['minutes']:.1f} "
              f"| {pts[-1][1]:.3f} | {best:.3f} |")
    svg = line_chart(series, title=args.title or f"{args.metric} per CPU-minute", x_label="CPU-minutes (1 thread)",
                     y_label=args.metric, log_y=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(standalone(svg, labels))


if __name__ == "__main__":
    main()
