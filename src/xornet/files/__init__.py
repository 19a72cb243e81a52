"""The pipeline's files: atomic, byte-deterministic writers (``atomic``) and the readers
and writers of datasets, models and snapshots, and the history/predictions tables."""


def npz_problem(exc: BaseException) -> str:
    """Why ``np.load(..., allow_pickle=False)`` could not read a file, for a one-line message.

    NumPy answers anything that is neither a zip nor a ``.npy`` with a hint to load it
    with ``allow_pickle``; the project never loads pickles, so that hint is not passed on.
    """
    text = str(exc)
    if "pickle" in text:
        return "neither a zip archive nor a .npy array; pickled data is never loaded"
    return text
