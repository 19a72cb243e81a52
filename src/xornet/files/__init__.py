"""The pipeline's files: atomic, byte-deterministic writers (``atomic``) and the readers
and writers of datasets, models and snapshots, and the history/predictions tables."""
