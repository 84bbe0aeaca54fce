"""Thin Prefect tasks, one module per step; the work lives behind drift_retrain.backends."""
