"""Imported at start-up by every Python process whose PYTHONPATH has this folder."""

import lazy_coverage  # noqa: F401  (installs the lazy coverage start on import)
