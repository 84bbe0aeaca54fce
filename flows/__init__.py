"""The flows: drift_to_retrain (one per drift signal) and sweep (scheduled). Orchestration only."""
