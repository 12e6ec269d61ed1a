"""Markdown tables of evaluator results, laid out like the official logs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if value == value else "nan"  # value != value only for NaN
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = [_row(header), "|" + "|".join(":---:" if i else ":---" for i in range(len(header))) + "|"]
    return "\n".join(lines + [_row(r) for r in rows])


def _per_class_table(per_class: Mapping[str, Mapping[str, Any]], first: str) -> str:
    columns = list(next(iter(per_class.values())).keys()) if per_class else []
    return _table([first, *columns], [[name, *scores.values()] for name, scores in per_class.items()])


def format_panoptic(results: Mapping[str, Any]) -> str:
    """Summary (PQ/SQ/RQ for All/Things/Stuff) and per-class tables."""
    rows = [
        [name, *(results[f"{m}{suffix}"] for m in ("PQ", "SQ", "RQ")), results[f"N{suffix}"]]
        for name, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st"))
    ]
    summary = _table(["", "PQ", "SQ", "RQ", "#categories"], rows)
    return summary + "\n\n" + _per_class_table(results.get("per_class", {}), "category")


def format_semantic(results: Mapping[str, Any]) -> str:
    """Summary (mIoU, fwIoU, mACC, pACC, and seen/unseen/hIoU if present) and per-class IoU/ACC."""
    keys = [k for k in ("mIoU", "fwIoU", "mACC", "pACC", "mIoU_seen", "mIoU_unseen", "hIoU") if k in results]
    summary = _table(keys, [[results[k] for k in keys]])
    return summary + "\n\n" + _per_class_table(results.get("per_class", {}), "class")


def format_instance(results: Mapping[str, Any]) -> str:
    """Summary (AP, AP50, AP75, APs, APm, APl) and per-category AP."""
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    summary = _table(keys, [[results[k] for k in keys]])
    return summary + "\n\n" + _per_class_table(results.get("per_class", {}), "category")


def format_markdown(results: Mapping[str, Any]) -> str:
    """Markdown for the results of any evaluator, recognised by its headline metric.

    Args:
        results: ``evaluate()`` output of PanopticEvaluator (has ``PQ``),
            SemanticEvaluator (``mIoU``) or InstanceEvaluator (``AP``).
    """
    if "PQ" in results:
        return format_panoptic(results)
    if "mIoU" in results:
        return format_semantic(results)
    if "AP" in results:
        return format_instance(results)
    raise ValueError(
        f"format_markdown: results have none of PQ, mIoU, AP (keys: {sorted(results)[:8]}); "
        "pass an evaluator's evaluate() output"
    )
