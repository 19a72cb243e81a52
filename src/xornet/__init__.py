"""xornet: a from-scratch NumPy multilayer perceptron that learns XOR.

The numerical core (``data``, ``activations``, ``losses``, ``initializers``,
``model``, ``optim``, ``train``, ``metrics``) imports NumPy only. Arrays follow
the tutorial's convention: features are rows, so ``X`` is (features, n) and
labels ``y`` are (1, n).
"""

__version__ = "0.1.0"
