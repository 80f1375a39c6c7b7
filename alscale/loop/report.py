"""The round table that ``alscale status`` prints."""

from __future__ import annotations

import math

from alscale.exceptions import PoolError

from alscale.loop.rounds import _evaluation_rows, load_history
from alscale.loop.stopping import metric_gain
from alscale.loop.labellog import describe_answers
from alscale.loop.workspace import Workspace

__all__ = ["status_rows", "status_table"]


def status_rows(ws: Workspace) -> list[dict]:
    """One dict per completed round: round, kind, labels, metric, gain per batch and per label,
    verdict, warnings.

    A gain is what the diminishing-returns rule sees (:func:`alscale.loop.stopping.metric_gain`):
    positive = better, for losses too, and measured on the same evaluation rows; None where the
    two rounds are not comparable.
    """
    metric = ws.settings["metric"]
    rows, prev = [], None
    for h in load_history(ws):
        value = (h.get("metrics") or {}).get(metric)
        gain = per_label = None
        if value is not None and prev is not None:
            gain = metric_gain(prev, h, metric)
            gain = None if math.isnan(gain) else gain
            added = h["labels"] - prev["labels"]
            per_label = gain / added if gain is not None and added > 0 else None
        stopping = h.get("stopping") or {}
        rows.append({
            "round": h["round"], "kind": h.get("kind", "model"), "labels": h["labels"], "selected": h.get("selected"),
            "metric": value, "gain": gain, "gain_per_label": per_label,
            "verdict": "stop (" + "; ".join(stopping["reasons"]) + ")" if stopping.get("stop") else ("go" if stopping else "-"),
            "warnings": h.get("composition_warnings", []),
        })
        if value is not None:
            prev = h
    return rows


def status_table(ws: Workspace) -> str:
    """The workspace summary and round table as text.

    The summary counts the training labels (what the budget's stopping rule counts; a round also
    counts the pending ids when it cuts its batch to the budget), the skips, the ids
    answered empty (if any) and the pending ids; and the evaluation set's labels: those recorded for its ids, or, for a
    workspace with a label column, the rows that column labels (what rounds evaluate on).
    Ids whose answers disagree follow it, each with the answer used.
    """
    metric = ws.settings["metric"]
    counts = ws.label_counts()
    label_column = ws.config.get("label_column")
    if label_column:  # rounds take the evaluation labels from the pool's column, not from the labels recorded
        try:
            from_column = f"{len(_evaluation_rows(ws)[0]):,} labeled from column {label_column!r}"
        except PoolError as exc:  # the history is the workspace's own: show it while the pool is away
            from_column = f"labels of column {label_column!r} not counted, the pool is not readable now: {str(exc).rstrip('.')}"
        evaluation = f"evaluation set {ws.config['evaluation']['size']:,} ({from_column})  labeled {counts['training']:,} for training"
    else:
        evaluation = (f"evaluation set {ws.config['evaluation']['size']:,}  "
                      f"labeled {counts['training']:,} for training, {counts['evaluation']:,} of the evaluation set")
    lines = [
        f"workspace {ws.path}  pool {ws.config['pool_rows']:,} rows  {evaluation}  "
        f"skipped {counts['skipped']:,}" + (f"  answered empty {counts['cancelled']:,}" if counts["cancelled"] else "") +
        f"  pending {len(set(ws.pending().column('id').to_pylist())):,}",  # an id may wait in two queues
        "",
    ]
    lines[-1:-1] = _disagreement_lines(ws)
    header = f"{'round':>5}  {'kind':<5}  {'labels':>7}  {'selected':>8}  {metric:>9}  {'gain/batch':>10}  {'gain/label':>10}  verdict"
    lines += [header, "-" * len(header)]

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    for r in status_rows(ws):
        lines.append(f"{r['round']:>5}  {r['kind']:<5}  {r['labels']:>7}  {fmt(r['selected'], 'd'):>8}  {fmt(r['metric'], '.4f'):>9}  "
                     f"{fmt(r['gain'], '+.4f'):>10}  {fmt(r['gain_per_label'], '+.2e'):>10}  {r['verdict']}")
        for w in r["warnings"]:
            lines.append(f"{'':>5}  warning: composition {w}")
    if lines[-1].startswith("-----"):  # the header's rule: no rounds below it
        lines.append("(no rounds yet: run `alscale round`)")
    return "\n".join(lines)


def _disagreement_lines(ws: Workspace, shown: int = 10) -> list[str]:
    """Lines naming the ids whose answers disagree (the labeled set uses the latest answer)."""
    found = ws.disagreements()
    if not found:
        return []
    lines = [f"answers disagree on {len(found):,} id(s); the latest answer is used:"]
    for d in found[:shown]:
        lines.append(f"  id {d['id']!r}: {describe_answers(d)} -> {d['used']!r}")
    if len(found) > shown:
        lines.append(f"  ... {len(found) - shown:,} more (Workspace.disagreements())")
    return lines
