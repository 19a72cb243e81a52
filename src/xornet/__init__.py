"""xornet: a from-scratch NumPy multilayer perceptron that learns XOR.

The folders are the layers; imports only go down this list (checked by
``lint-imports``, see pyproject.toml):

- ``search``, ``cli``: the command lines (random search; options and errors
  shared by ``stages/*.py``);
- ``stages`` (one module per pipeline stage: load, one library call, write)
  and ``tracking`` (MLflow, through an outbox and a courier);
- ``figures`` (matplotlib);
- ``study`` (the convergence study);
- ``config`` (params schema, presets) and ``files`` (atomic, deterministic I/O);
- ``core`` (the network, NumPy only; start with ``core/reference.py``);
- ``errors`` (the exception types, with their exit codes).

Arrays follow the tutorial's convention: features are rows, so ``X`` is
(features, n) and labels ``y`` are (1, n).
"""

from xornet.core import determinism

# Before anything imports NumPy (every stage imports xornet first): the same
# floating-point results on every x86-64 machine with AVX2. See core/determinism.py.
determinism.pin()

__version__ = "0.1.0"
