"""The release layer: the gate that compares a candidate model with the live one the way fraud
teams do, backtests, and comparison reports."""

from ._backtest import BacktestWeek, weekly_backtest
from ._bootstrap import BootstrapResult, bootstrap_ap_difference, bootstrap_mean_difference
from ._drift import population_stability_index
from ._gate import GateConfig, run_gate, score_diffs
from ._report_html import render_gate_html
from ._report_io import GateReportFiles, read_gate_report, write_gate_report
from ._report_types import CheckResult, GateReport
from ._wiring import GateDecision, gate_and_record, record_version_tags

__all__ = [
    "BacktestWeek",
    "BootstrapResult",
    "CheckResult",
    "GateConfig",
    "GateDecision",
    "GateReport",
    "GateReportFiles",
    "bootstrap_ap_difference",
    "bootstrap_mean_difference",
    "gate_and_record",
    "population_stability_index",
    "read_gate_report",
    "record_version_tags",
    "render_gate_html",
    "run_gate",
    "score_diffs",
    "weekly_backtest",
    "write_gate_report",
]
