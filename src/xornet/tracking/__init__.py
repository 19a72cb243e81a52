"""Experiment tracking: the stages record runs into an outbox (``outbox``), a courier
process (``courier``) delivers them to MLflow (``mlflow_writer``), and ``pyfunc_model``
serves a trained network. The only layer that imports MLflow or pandas."""
