"""Hyperparameters: the ``params.yaml`` schema (``schema``) and named presets (``presets``)."""
