"""Datasets: generators, the seeded split, deterministic files and a strict loader."""

import zipfile

import numpy as np
import pytest

from xornet.core.data import (
    GENERATORS,
    Dataset,
    generate,
    make_noisy_xor,
    make_parity,
    make_xor,
    split,
)
from xornet.errors import DataFileError
from xornet.files.atomic import npz_bytes
from xornet.files.datasets import load_dataset, save_dataset


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ----------------------------------------------------------------- generators
def test_xor_is_the_exact_xor_of_two_bits():
    data = make_xor(500, rng())
    assert data.X.shape == (2, 500) and data.X.dtype == np.float64
    assert data.y.shape == (1, 500) and data.y.dtype == np.int64
    assert set(np.unique(data.X)) == {0.0, 1.0}
    np.testing.assert_array_equal(data.y[0], data.X[0].astype(int) ^ data.X[1].astype(int))
    assert data.n == 500
    # all four corners occur
    assert len({tuple(col) for col in data.X.T}) == 4


@pytest.mark.parametrize("n_bits", [1, 3, 5])
def test_parity_labels(n_bits):
    data = make_parity(400, rng(), n_bits=n_bits)
    assert data.X.shape == (n_bits, 400) and data.X.dtype == np.float64
    assert data.y.shape == (1, 400) and data.y.dtype == np.int64
    np.testing.assert_array_equal(data.y[0], data.X.sum(axis=0).astype(int) % 2)


def test_noisy_xor_is_labelled_by_its_corner():
    noise = 0.1
    data = make_noisy_xor(1000, rng(), noise=noise)
    assert data.X.shape == (2, 1000) and data.y.shape == (1, 1000)
    corner = np.round(data.X).astype(int)  # noise 0.1: never past the midpoint in 1000 draws
    assert np.all(np.abs(data.X - corner) < 0.5)
    np.testing.assert_array_equal(data.y[0], corner[0] ^ corner[1])
    assert 0.05 < np.std(data.X - corner) < 0.15


def test_noisy_xor_noise_zero_is_clean_xor():
    data = make_noisy_xor(100, rng(), noise=0.0)
    np.testing.assert_array_equal(data.X, make_xor(100, rng()).X)


def test_generators_are_registered():
    assert set(GENERATORS) == {"xor", "noisy_xor", "parity"}


# ---------------------------------------------------------------------- split
@pytest.mark.parametrize(("n", "fraction", "n_test"), [(100, 0.2, 20), (10, 0.25, 2), (7, 0.5, 4)])
def test_split_sizes(n, fraction, n_test):
    train, test = split(make_xor(n, rng()), fraction, rng(1))
    assert (train.n, test.n) == (n - n_test, n_test)


def test_split_is_a_seeded_partition():
    data = Dataset(np.arange(20.0).reshape(1, 20), np.zeros((1, 20), dtype=np.int64))
    train, test = split(data, 0.3, rng(5))
    assert sorted(np.concatenate([train.X[0], test.X[0]])) == list(range(20))
    again = split(data, 0.3, rng(5))
    np.testing.assert_array_equal(again[1].X, test.X)
    other = split(data, 0.3, rng(6))
    assert not np.array_equal(other[1].X, test.X)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.01])
def test_split_refuses_empty_sets(fraction):
    with pytest.raises(ValueError, match="empty"):
        split(make_xor(10, rng()), fraction, rng())


@pytest.mark.parametrize("kind", ["xor", "noisy_xor", "parity"])
def test_generate_is_deterministic(kind):
    a = generate(kind, 200, 0.25, seed=3, noise=0.1, n_bits=3)
    b = generate(kind, 200, 0.25, seed=3, noise=0.1, n_bits=3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.X, y.X)
        np.testing.assert_array_equal(x.y, y.y)
    assert (a[0].n, a[1].n) == (150, 50)


# ---------------------------------------------------------------------- files
def test_save_and_load_round_trip(tmp_path):
    train, _ = generate("noisy_xor", 100, 0.2, seed=1, noise=0.2)
    path = tmp_path / "train.npz"
    save_dataset(path, train)
    loaded = load_dataset(path)
    np.testing.assert_array_equal(loaded.X, train.X)
    np.testing.assert_array_equal(loaded.y, train.y)
    assert loaded.X.dtype == np.float64 and loaded.y.dtype == np.int64
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["X", "y"]


def test_generate_and_save_give_byte_identical_files(tmp_path):
    paths = []
    for i in range(2):
        train, test = generate("xor", 300, 0.2, seed=7)
        for name, data in (("train", train), ("test", test)):
            paths.append(tmp_path / f"{name}{i}.npz")
            save_dataset(paths[-1], data)
    assert paths[0].read_bytes() == paths[2].read_bytes()
    assert paths[1].read_bytes() == paths[3].read_bytes()


def write_npz(path, **arrays):
    path.write_bytes(npz_bytes(arrays))
    return path


GOOD_X = np.array([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
GOOD_Y = np.array([[1, 0, 0]])


def corrupt_cases(tmp_path):
    """(path, words the message must contain), one per way a data file can be wrong."""
    good = write_npz(tmp_path / "good.npz", X=GOOD_X, y=GOOD_Y)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    not_zip = tmp_path / "notzip.npz"
    not_zip.write_text("X,y\n0,1\n")
    npy = tmp_path / "array.npz"  # a bare .npy array, not an archive
    with open(npy, "wb") as handle:
        np.save(handle, GOOD_X)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    pickled = tmp_path / "pickled.npz"
    with zipfile.ZipFile(pickled, "w") as archive:
        with archive.open("X.npy", "w") as member:
            np.lib.format.write_array(member, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        with archive.open("y.npy", "w") as member:
            np.lib.format.write_array(member, GOOD_Y)
    return [
        (tmp_path / "missing.npz", ["not found"]),
        (truncated, ["not a readable"]),
        (not_zip, ["not a readable"]),
        (npy, ["not a readable"]),
        (empty, ["not a readable"]),
        (pickled, ["not a readable"]),
        (write_npz(tmp_path / "no_y.npz", X=GOOD_X), ["missing", "y"]),
        (write_npz(tmp_path / "no_x.npz", y=GOOD_Y), ["missing", "X"]),
        (write_npz(tmp_path / "x1d.npz", X=GOOD_X[0], y=GOOD_Y), ["X must be", "(3,)"]),
        (
            write_npz(tmp_path / "y_wide.npz", X=GOOD_X, y=np.array([[1, 0]])),
            ["y must be", "(1, 2)"],
        ),
        (write_npz(tmp_path / "y_flat.npz", X=GOOD_X, y=GOOD_Y[0]), ["y must be", "(3,)"]),
        (write_npz(tmp_path / "x_str.npz", X=GOOD_X.astype(str), y=GOOD_Y), ["X must be", "<U"]),
        (write_npz(tmp_path / "x_cplx.npz", X=GOOD_X + 0j, y=GOOD_Y), ["X must be", "complex"]),
        (
            write_npz(tmp_path / "y_float.npz", X=GOOD_X, y=GOOD_Y.astype(float)),
            ["y must be", "float"],
        ),
        (
            write_npz(tmp_path / "x_nan.npz", X=np.where(GOOD_X, np.nan, 0), y=GOOD_Y),
            ["non-finite"],
        ),
        (
            write_npz(tmp_path / "x_inf.npz", X=np.where(GOOD_X, np.inf, 0), y=GOOD_Y),
            ["non-finite"],
        ),
        (write_npz(tmp_path / "y_two.npz", X=GOOD_X, y=np.array([[0, 2, 1]])), ["0/1"]),
        (write_npz(tmp_path / "y_neg.npz", X=GOOD_X, y=np.array([[0, -1, 1]])), ["0/1"]),
    ]


def test_load_dataset_rejects_bad_files(tmp_path):
    for path, words in corrupt_cases(tmp_path):
        with pytest.raises(DataFileError) as info:
            load_dataset(path)
        message = str(info.value)
        assert message.startswith(str(path)), message
        for word in words:
            assert word in message, (path.name, message)


def test_load_dataset_accepts_integer_and_bool_encodings(tmp_path):
    path = write_npz(tmp_path / "ints.npz", X=GOOD_X.astype(np.int8), y=GOOD_Y.astype(bool))
    data = load_dataset(path)
    assert data.X.dtype == np.float64 and data.y.dtype == np.int64
    np.testing.assert_array_equal(data.y, GOOD_Y)
