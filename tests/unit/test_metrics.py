"""The metrics' pure parts, and the shipped dashboard and alert rules against what we export.

The dashboard and the rules name metrics in PromQL strings that nothing else checks: a
renamed metric or label would leave a panel silently empty and an alert that never fires.
Here every name and label they use must be in ``tasks.metrics.EXPORTED`` (which the real
stack test scrapes), and every exported family must appear on the dashboard.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tasks import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "stt-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

METRIC = re.compile(r"\b(stt_[a-z_]+)\b")
SELECTOR = re.compile(r"\b(stt_[a-z_]+)\{([^}]*)\}")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _family(series: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", series.removesuffix("_total"))


def check_expr(expr: str) -> set[str]:
    """Assert ``expr`` only names exported series and their labels; return the series."""
    names = set(METRIC.findall(expr))
    assert names, f"no stt_ metric in {expr!r}"
    unknown = names - metrics.EXPORTED.keys()
    assert not unknown, f"{expr!r} names series we do not export: {unknown}"
    for name, body in SELECTOR.findall(expr):
        for label in MATCHER.findall(body):
            assert label in metrics.EXPORTED[name], f"{name} has no label {label!r}"
    allowed = {label for name in names for label in metrics.EXPORTED[name]} | {"le"}
    for group in GROUPING.findall(expr):
        for label in filter(None, (g.strip() for g in group.split(","))):
            assert label in allowed, f"{expr!r} groups by {label!r}, which {names} lack"
    return names


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def test_dashboard_is_a_grafana_dashboard_whose_panels_use_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    used: set[str] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            used |= check_expr(target["expr"])
    shown = {_family(s) for s in used}
    exported = {_family(s) for s in metrics.EXPORTED}
    assert shown == exported, f"exported but not on the dashboard: {exported - shown}"


def test_alert_rules_use_exported_metrics_and_cover_the_four_signals() -> None:
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    by_family: dict[str, list[str]] = {}
    for rule in rules:
        assert rule["alert"].startswith("Stt") and rule["annotations"]["summary"]
        for name in check_expr(rule["expr"]):
            by_family.setdefault(_family(name), []).append(rule["expr"])
    assert any('status="429"' in e for e in by_family["stt_api_requests"])
    assert any("histogram_quantile(0.95" in e for e in by_family["stt_detection_lag_seconds"])
    assert any("failed" in e for e in by_family["stt_jobs_finished"])
    assert any("> 0" in e for e in by_family["stt_sweeper_redrives"])


def test_the_checker_catches_unknown_names_and_labels() -> None:
    with pytest.raises(AssertionError):
        check_expr("rate(stt_jobs_done_total[5m])")
    with pytest.raises(AssertionError):
        check_expr('rate(stt_api_requests_total{code="429"}[5m])')
    with pytest.raises(AssertionError):
        check_expr("sum by (model) (rate(stt_api_requests_total[5m]))")


# -- detection lag --------------------------------------------------------------------------


def test_detection_lag_takes_the_midpoint_of_the_last_pending_and_first_finished_answers() -> None:
    # Pending at 100, seen finished at 110, stored at 111: finished around 105.
    assert metrics.detection_lag(111.0, 110.0, 100.0) == 6.0


def test_without_a_pending_answer_the_first_sighting_stands_in() -> None:
    assert metrics.detection_lag(111.0, 110.0, None) == 1.0
    assert metrics.detection_lag(111.0, 110.0, 110.5) == 1.0  # clock noise: never later


@given(
    pending=st.floats(0, 1e6),
    gap=st.floats(0, 1e4),
    store_delay=st.floats(0, 1e3),
    share=st.floats(0, 1),
)
def test_detection_lag_is_within_half_the_gap_of_the_truth(
    pending: float, gap: float, store_delay: float, share: float
) -> None:
    seen = pending + gap
    stored = seen + store_delay
    true_finish = pending + share * gap  # anywhere the server could have finished
    lag = metrics.detection_lag(stored, seen, pending)
    assert store_delay - 1e-6 <= lag <= stored - pending + 1e-6
    assert abs(lag - (stored - true_finish)) <= gap / 2 + 1e-6


# -- labels and outcomes --------------------------------------------------------------------


def test_model_labels_are_capped() -> None:
    names = [f"vendor/model-{i}" for i in range(metrics.MAX_MODEL_LABELS + 5)]
    labels = [metrics._model(name) for name in names]
    assert metrics.OTHER_MODEL in labels
    assert len(set(labels)) <= metrics.MAX_MODEL_LABELS + 1
    assert metrics._model(labels[0]) == labels[0]  # a known one stays itself


def _value(counter: Any, *labels: str) -> float:
    return float(counter.labels(*labels)._value.get())


@pytest.mark.parametrize(
    ("status", "last", "outcome"),
    [(200, False, "delivered"), (204, True, "delivered"), (500, False, "retry"),
     (None, False, "retry"), (503, True, "failed"), (None, True, "failed")],
)  # fmt: skip
def test_callback_attempts_by_outcome(status: int | None, last: bool, outcome: str) -> None:
    before = _value(metrics.CALLBACK_DELIVERIES, outcome)
    metrics.callback_attempt(status, last=last)
    assert _value(metrics.CALLBACK_DELIVERIES, outcome) == before + 1
