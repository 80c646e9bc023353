"""The models layer: datasets and time splits from the offline engine, training (LightGBM and a
logistic-regression baseline), calibration, feature selection, metrics, the action policy and
the registry (MLflow)."""

__all__: list[str] = []
