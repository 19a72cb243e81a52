"""MLflow tracking (placeholder until the tracking module lands)."""
