"""fastmlp.datasets readers: CSV, .npz and MNIST IDX files written by the tests, their
error messages, and (when present) the real MNIST t10k files beside the project."""

import gzip
import os

import numpy as np
import pytest

from fastmlp.datasets import (DataFileError, csv_columns, detect_format, load_csv, load_mnist_idx,
                              load_npz)
from conftest import write_idx

MNIST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                     "data", "mnist-t10k")


def write(path, text):
    path.write_text(text)
    return path


# ------------------------------------------------------------------ CSV
def test_csv_with_header_and_string_labels(tmp_path):
    path = write(tmp_path / "d.csv", "a,b,label\n1,2.5,cat\n3,-4e-1,dog\n\n5,6,cat\n")
    X, y, features, target = load_csv(path, return_names=True)
    assert X.dtype == np.float32 and X.shape == (3, 2)
    np.testing.assert_array_equal(X, np.float32([[1, 2.5], [3, -0.4], [5, 6]]))
    assert list(y) == ["cat", "dog", "cat"]
    assert features == ["a", "b"] and target == "label"


def test_csv_without_header_names_columns_from_one(tmp_path):
    path = write(tmp_path / "d.csv", "1,2,0\n3,4,1\n5,6,1\n")
    assert csv_columns(path) == (["1", "2", "3"], False)
    X, y, features, target = load_csv(path, return_names=True, dtype=np.float64)
    assert X.dtype == np.float64 and X.shape == (3, 2)
    assert y.dtype == np.int64 and list(y) == [0, 1, 1]
    assert features == ["1", "2"] and target == "3"


def test_csv_target_by_name_position_or_none_and_dropped_columns(tmp_path):
    path = write(tmp_path / "d.csv", "a,b,c\n1,2,3\n4,5,6\n")
    X, y = load_csv(path, target="a")
    np.testing.assert_array_equal(X, [[2, 3], [5, 6]])
    assert list(y) == [1, 4]
    X, y = load_csv(path, target=1)
    np.testing.assert_array_equal(X, [[1, 3], [4, 6]])
    X, y = load_csv(path, target=None)
    assert X.shape == (2, 3) and y is None
    X, y = load_csv(path, target=None, drop=["b"])
    np.testing.assert_array_equal(X, [[1, 3], [4, 6]])


def test_csv_number_targets_are_floats_and_whole_numbers_are_integer_labels(tmp_path):
    _, y = load_csv(write(tmp_path / "f.csv", "x,y\n1,0.5\n2,1.5\n"))
    assert y.dtype == np.float64 and list(y) == [0.5, 1.5]
    _, y = load_csv(write(tmp_path / "i.csv", "x,y\n1,3\n2,-1\n"))
    assert y.dtype == np.int64 and list(y) == [3, -1]


def test_csv_quotes_bom_blank_lines_and_gzip(tmp_path):
    text = '\ufeff"a","b","y"\n\n"1", 2 ,"x, y"\n3,4,z\n'
    path = tmp_path / "q.csv"
    path.write_text(text, encoding="utf-8")
    X, y, features, target = load_csv(path, return_names=True)
    assert features == ["a", "b"] and target == "y"
    assert list(y) == ["x, y", "z"]
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    packed = tmp_path / "q.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    X2, y2 = load_csv(packed)
    np.testing.assert_array_equal(X, X2)
    assert list(y2) == list(y)


@pytest.mark.parametrize("text, message", [
    ("a,b,y\n1,2,0\n3,oops,1\n", "line 3, column 'b': 'oops' is not a number"),
    ("a,b,y\n1,2,0\n\n3,,1\n", "line 4, column 'b': an empty cell is not a number"),
    ("a,b,y\n1,nan,0\n", "line 2, column 'b': 'nan' is not a finite number"),
    ("a,b,y\n1,2,0\n3,4\n", "line 3: 2 fields, expected 3 like the header"),
    ("1,2,0\n3,4,5,6\n", "line 2: 4 fields, expected 3 like the first line"),
    ("a,b,y\n1,2,\n", "line 2: the target column 'y' is empty"),
    ("a,b,y\n1,2,0.5\n3,4,inf\n", "line 3, column 'y': 'inf' is not a finite number"),
    ("", "is empty"),
    ("\n\n", "is empty"),
    ("a,b,y\n", "holds a header but no data rows"),
    ("a,a,y\n1,2,3\n", "names column(s) 'a' more than once"),
])
def test_malformed_csv_is_refused_naming_the_line_and_value(tmp_path, text, message):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataFileError) as error:
        load_csv(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_missing_csv_target_names_it_and_the_columns(tmp_path):
    path = write(tmp_path / "d.csv", "alpha,beta\n1,2\n")
    with pytest.raises(DataFileError, match=r"no column 'gamma'; its columns are alpha, beta"):
        load_csv(path, target="gamma")
    headless = write(tmp_path / "h.csv", "1,2\n")
    with pytest.raises(DataFileError, match=r"columns are 1 to 2 \(the file has no header row\)"):
        load_csv(headless, target="x")
    with pytest.raises(DataFileError, match="no column 5"):
        load_csv(headless, target=5)
    wide = write(tmp_path / "w.csv",
                 ",".join(f"c{i}" for i in range(30)) + "\n" + ",".join("1" * 30) + "\n")
    with pytest.raises(DataFileError,
                       match=r"columns are c0, c1, .*, c9, \.\.\., c25, .*, c29 \(30 columns\)"):
        load_csv(wide, target="y")


def test_missing_file_and_directory_are_named(tmp_path):
    with pytest.raises(DataFileError, match=r"nothere\.csv: no such file"):
        load_csv(tmp_path / "nothere.csv")
    with pytest.raises(DataFileError, match="is a directory"):
        load_csv(tmp_path)


def test_binary_file_is_not_taken_for_a_csv(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xff\xfe\x00\x01garbage\x9c")
    with pytest.raises(DataFileError, match="not a UTF-8 text CSV"):
        load_csv(path)


# ------------------------------------------------------------------ .npz
def test_npz_with_X_and_y_and_images_flattened(tmp_path):
    X = np.arange(24, dtype=np.float64).reshape(3, 2, 4)
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0, 1, 1], np.int32))
    X2, y2 = load_npz(tmp_path / "d.npz")
    assert X2.shape == (3, 8) and X2.dtype == np.float32
    np.testing.assert_array_equal(X2, X.reshape(3, 8))
    assert y2.dtype == np.int64 and list(y2) == [0, 1, 1]
    np.savez(tmp_path / "noy.npz", X=X)
    assert load_npz(tmp_path / "noy.npz")[1] is None


@pytest.mark.parametrize("arrays, message", [
    (dict(features=np.ones((2, 2))), "no array named X; it holds features"),
    (dict(X=np.ones(3)), "X has shape (3,)"),
    (dict(X=np.ones((2, 2)), y=np.ones(3)), "y has shape (3,) but X holds 2 samples"),
    (dict(X=np.array([[1.0, np.nan]])), "X holds NaN"),
    (dict(X=np.array([["a", "b"]])), "not numbers"),
])
def test_bad_npz_is_refused_with_its_problem(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataFileError) as error:
        load_npz(tmp_path / "d.npz")
    assert message in str(error.value)


def test_npz_with_pickled_objects_is_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataFileError, match="not a readable .npz"):
        load_npz(tmp_path / "d.npz")


def test_detect_format_reads_contents_not_names(tmp_path):
    with open(tmp_path / "a.csv", "wb") as stream:  # np.savez would append .npz to a name
        np.savez(stream, X=np.ones((1, 1)))
    np.save(tmp_path / "b.npy", np.ones(2))
    write(tmp_path / "c.npz", "1,2\n")
    write_idx(tmp_path / "d.bin", np.zeros((1, 2, 2)), 2051, compress=True)
    write_idx(tmp_path / "e", np.zeros(3), 2049)
    assert detect_format(tmp_path / "a.csv") == "npz"
    assert detect_format(tmp_path / "b.npy") == "npy"
    assert detect_format(tmp_path / "c.npz") == "csv"
    assert detect_format(tmp_path / "d.bin") == "idx"
    assert detect_format(tmp_path / "e") == "idx"


# ------------------------------------------------------------------ IDX
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_idx_images_and_labels(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 3, 4))
    labels = np.array([3, 1, 4, 1, 5])
    write_idx(tmp_path / "img", images, 2051, compress)
    write_idx(tmp_path / "lab", labels, 2049, compress)
    X, y = load_mnist_idx(tmp_path / "img", tmp_path / "lab")
    assert X.shape == (5, 12) and X.dtype == np.float32
    np.testing.assert_allclose(X, images.reshape(5, 12) / 255, rtol=1e-6)
    assert X.min() >= 0 and X.max() <= 1
    assert y.dtype == np.int64 and list(y) == list(labels)
    X2, y2 = load_mnist_idx(tmp_path / "img")
    assert y2 is None and np.array_equal(X, X2)


def test_bad_idx_files_are_refused_with_their_problem(tmp_path):
    images = write_idx(tmp_path / "img", np.zeros((4, 2, 2)), 2051)
    labels = write_idx(tmp_path / "lab", np.zeros(3), 2049)
    with pytest.raises(DataFileError, match=r"holds 4 images but .*lab holds 3 labels"):
        load_mnist_idx(images, labels)
    with pytest.raises(DataFileError, match=r"not an IDX images file \(magic number 2049, expected 2051\)"):
        load_mnist_idx(labels)
    with pytest.raises(DataFileError, match=r"not an IDX labels file \(magic number 2051"):
        load_mnist_idx(images, images)
    truncated = tmp_path / "short"
    truncated.write_bytes(images.read_bytes()[:-3])
    with pytest.raises(DataFileError, match=r"holds 13 bytes of images .* 4 x 2 x 2 = 16"):
        load_mnist_idx(truncated)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(images.read_bytes())[:-10])
    with pytest.raises(DataFileError, match="could not be read"):
        load_mnist_idx(broken)


@pytest.mark.skipif(not os.path.isdir(MNIST), reason="../shared/data/mnist-t10k is not here")
def test_real_mnist_t10k_files():
    X, y = load_mnist_idx(os.path.join(MNIST, "t10k-images-idx3-ubyte.gz"),
                          os.path.join(MNIST, "t10k-labels-idx1-ubyte.gz"))
    assert X.shape == (10000, 784) and X.dtype == np.float32
    assert X.min() == 0 and X.max() == 1
    assert list(np.bincount(y)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
