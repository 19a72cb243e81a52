"""The MLflow pyfunc of a trained xornet network, logged as a "model from code".

MLflow never pickles anything here: :func:`xornet.tracking.mlflow_writer` logs this file as the
model's code, the weights ``.npz`` as its ``weights`` artifact and the
``xornet`` package as its ``code_paths``, so the served model runs the very
library that trained it (MLflow puts the model's ``code/`` folder first on
``sys.path``).

Input: one row per sample, one numeric column per input bit, ``x1 .. xN``
(``mlflow models serve`` accepts ``dataframe_split``, ``dataframe_records`` or
``inputs`` as a list of rows). Output: ``probability`` (P(y = 1)) and
``label`` (0/1, 1 when probability >= ``threshold``, an optional inference
param, default 0.5).
"""

from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


def feature_columns(n_inputs: int) -> list[str]:
    """Column names of the model input: ``["x1", "x2", ...]``."""
    return [f"x{i}" for i in range(1, n_inputs + 1)]


def as_features(model_input, columns: list[str]) -> np.ndarray:
    """The input as an (n, features) float array: a DataFrame with ``columns`` (extra
    columns ignored), or anything array-like of n rows."""
    if isinstance(model_input, pd.DataFrame):
        if all(c in model_input.columns for c in columns):
            model_input = model_input[columns]
        values = model_input.to_numpy(dtype=np.float64)
    else:
        values = np.asarray(model_input, dtype=np.float64)
    values = np.atleast_2d(values)
    if values.ndim != 2 or values.shape[1] != len(columns):
        raise ValueError(
            f"expected rows of {len(columns)} inputs ({', '.join(columns)}), "
            f"got shape {values.shape}"
        )
    return values


class XorNetModel(PythonModel):
    """P(y = 1) and 0/1 labels from the weights in the ``weights`` artifact."""

    def load_context(self, context):
        from xornet.files.models import load_model  # from the model's code/ folder

        self.network = load_model(context.artifacts["weights"])
        self.columns = feature_columns(self.network.arch.n_inputs)

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        threshold = float((params or {}).get("threshold", 0.5))
        X = as_features(model_input, self.columns)
        probability = self.network.predict_proba(X.T).ravel()  # features are rows inside
        return pd.DataFrame(
            {"probability": probability, "label": (probability >= threshold).astype(np.int64)}
        )


set_model(XorNetModel())
