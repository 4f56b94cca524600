"""How the report writes values, and which metrics are details: shared by the HTML and Markdown pages."""
from __future__ import annotations

import json
import math
import re
from typing import Any

PER_DIM = re.compile(r"(^|[/_])(kl_)?dim\d+$|per_dim$")


def is_detail(name: str, names: list[str]) -> bool:
    """A per-dimension, per-factor or bookkeeping value (kl_dim3, a per-factor score_x when score is there,
    rotation_dim): kept in summary.json and TensorBoard, left out of the table's headline columns."""
    base = name.rsplit("/", 1)[-1]
    if PER_DIM.search(base) or base.endswith(("_dim", "_order", "_index")):
        return True
    return any(base != other and base.startswith(other.rsplit("/", 1)[-1] + "_") for other in names)


def fmt_value(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e6:
            return str(int(v))
        return f"{v:.4g}"
    return str(v)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def finite_number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def sort_value(v: Any) -> tuple:
    n = finite_number(v)
    return (0, n, "") if n is not None else (1, 0.0, json.dumps(v, sort_keys=True, default=str))
