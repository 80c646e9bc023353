"""The release layer: the gate that compares a candidate model with the live one the way fraud
teams do, backtests, and comparison reports."""

__all__: list[str] = []
