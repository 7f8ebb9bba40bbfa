"""Flat views of a benchmark's results, shared by the harness and its report (which do not import each other)."""
from __future__ import annotations

from typing import Optional


def final_metrics(final: Optional[dict]) -> dict:
    """Flat final test-set metrics: clean, each attack's cumulative robust accuracy, worst case (none: {})."""
    if not final:
        return {}
    out = {"clean": final["clean"]}
    for a in final["attacks"]:
        out[a["name"]] = a["robust_after"]
    out["worst_case"] = final["worst_case"]
    out.update({k: v for k, v in final.items() if k.startswith("worst_case_first_")})
    return out
