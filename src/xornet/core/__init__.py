"""The numerical core: the network in NumPy, nothing else (no files, no tracking, no plots).

Read ``reference.py`` first: the tutorial's network written as plainly as the
tutorial writes it. The rest is that network made general, stable and fast,
and tested against it: ``activations`` and ``losses`` (registries of small
objects, each a value and a derivative), ``initializers``, ``model`` (forward
pass and backprop in blocks of columns), ``optimizers``, ``training`` (the
loop), ``batched`` (many seeds at once, for the study), ``data`` (the seeded
datasets), ``metrics``, and ``determinism`` (pins the CPU-dependent kernels of
NumPy and OpenBLAS before NumPy loads: the same bytes on every AVX2 machine).
Features are rows: ``X`` is (features, n), ``y`` is (1, n). Imports NumPy, the
standard library and :mod:`xornet.errors` only.
"""
