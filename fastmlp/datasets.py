"""Data sets that fastmlp can make or read without downloading anything: the generated
shape images of the demo, and CSV, .npz and MNIST IDX files.
"""

import csv
import gzip
import io
import math
import numbers
import os
import warnings
import zipfile

import numpy as np

SHAPE_CLASSES = ("ring", "square")


def make_shapes(n_samples=20000, size=20, noise=0.2, seed=0, dtype=np.float32):
    """Noisy ``size`` x ``size`` images of two shape classes: rings (label 0) and squares (label 1).

    Each image holds one outline of random centre and radius, blurred edges, random
    brightness and Gaussian pixel noise. Returns ``X`` of shape (n_samples, size*size)
    and integer labels ``y`` of shape (n_samples,), classes balanced at random.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_samples)
    centre = rng.uniform(0.35 * size, 0.65 * size, (n_samples, 2, 1, 1))
    radius = rng.uniform(0.15 * size, 0.3 * size, (n_samples, 1, 1))
    brightness = rng.uniform(0.6, 1.0, (n_samples, 1, 1))
    rows, cols = np.mgrid[0:size, 0:size]
    dy = rows[None] - centre[:, 0]
    dx = cols[None] - centre[:, 1]
    ring = np.hypot(dx, dy)
    square = np.maximum(np.abs(dx), np.abs(dy))
    distance = np.where(labels[:, None, None] == 0, ring, square)
    images = brightness * np.clip(1.0 - np.abs(distance - radius), 0.0, 1.0)
    images += rng.normal(0.0, noise, images.shape)
    return images.reshape(n_samples, size * size).astype(dtype), labels.astype(np.int64)


class DataFileError(ValueError):
    """A data file is missing, unreadable or malformed; the message names the file and the problem."""


# ------------------------------------------------------------------ formats
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
NPY_MAGIC = b"\x93NUMPY"
IDX_IMAGES, IDX_LABELS = 2051, 2049  # unsigned bytes, 3 and 1 dimensions


def _check_file(path):
    name = os.fspath(path)
    if not os.path.exists(name):
        raise DataFileError(f"{name}: no such file")
    if os.path.isdir(name):
        raise DataFileError(f"{name} is a directory, not a data file")
    return name


def _open_binary(path):
    """`path` opened for reading bytes, through gzip when it starts with gzip's magic bytes."""
    name = _check_file(path)
    stream = open(name, "rb")
    if stream.read(2) == GZIP_MAGIC:
        stream.close()
        return gzip.open(name, "rb")
    stream.seek(0)
    return stream


def detect_format(path):
    """'npz', 'npy', 'idx' or 'csv', from the file's first bytes (gzip looked through),
    never from its name."""
    name = _check_file(path)
    try:
        with open(name, "rb") as raw:
            if raw.read(4) == ZIP_MAGIC:
                return "npz"
        with _open_binary(name) as stream:
            head = stream.read(8)
    except (OSError, EOFError) as error:
        raise DataFileError(f"{name} could not be read: {error}") from None
    if head.startswith(NPY_MAGIC):
        return "npy"
    if len(head) >= 4 and int.from_bytes(head[:4], "big") in (IDX_IMAGES, IDX_LABELS):
        return "idx"
    return "csv"


# ------------------------------------------------------------------ CSV
def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_rows(path):
    """(line number, cells) for each non-blank row of the CSV file, cells stripped."""
    name = os.fspath(path)
    try:
        with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            reader = csv.reader(text)
            for cells in reader:
                if cells and any(cell.strip() for cell in cells):
                    yield reader.line_num, [cell.strip() for cell in cells]
    except UnicodeDecodeError:
        raise DataFileError(f"{name} is not a UTF-8 text CSV file") from None
    except csv.Error as error:
        raise DataFileError(f"{name} is not a valid CSV file: {error}") from None
    except (OSError, EOFError) as error:
        raise DataFileError(f"{name} could not be read: {error}") from None


def csv_columns(path):
    """The column names of a CSV file and whether its first row is a header.

    The first row is a header when any of its cells is not a number; a file without
    one has its columns named "1", "2", ... (counted from 1).
    """
    name = os.fspath(path)
    for _, cells in _csv_rows(path):
        if all(_is_number(cell) for cell in cells):
            return [str(i) for i in range(1, len(cells) + 1)], False
        duplicates = sorted({cell for cell in cells if cells.count(cell) > 1})
        if duplicates:
            raise DataFileError(f"{name}: the header names column(s) {', '.join(map(repr, duplicates))} "
                                f"more than once")
        return cells, True
    raise DataFileError(f"{name} is empty: it holds no rows")


def _column_index(target, columns, has_header, name):
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        if -len(columns) <= target < len(columns):
            return target % len(columns)
        raise DataFileError(f"{name} has {len(columns)} columns; there is no column {target}")
    if target in columns:
        return columns.index(target)
    if not has_header:
        listed = f"1 to {len(columns)} (the file has no header row)"
    elif len(columns) <= 20:
        listed = ", ".join(columns)
    else:
        listed = f"{', '.join(columns[:10])}, ..., {', '.join(columns[-5:])} ({len(columns)} columns)"
    raise DataFileError(f"{name} has no column {target!r}; its columns are {listed}")


def load_csv(path, target=-1, drop=(), dtype=np.float32, return_names=False):
    """Features and target from a CSV file (comma-separated, header row optional).

    target: the target column's name (a header name, or "1", "2", ... in a file without
    a header), its position (an int, 0-based, negative from the end; default the last
    column) or None for a file of features only. Columns named in ``drop`` are skipped.
    Every other cell must be a number. Returns ``(X, y)``: X of shape (n_rows,
    n_features) and `dtype`; y int64 when the target holds whole numbers, float64 for
    other numbers, strings for class names, and None without a target. With
    ``return_names``, returns ``(X, y, feature_names, target_name)``.
    Raises DataFileError naming the line (counted from 1, header included) and value
    of the first bad cell.
    """
    name = os.fspath(path)
    columns, has_header = csv_columns(path)
    t = None if target is None else _column_index(target, columns, has_header, name)
    skipped = {t} | {_column_index(c, columns, has_header, name) for c in drop}
    features = [i for i in range(len(columns)) if i not in skipped]
    if not features:
        raise DataFileError(f"{name} has no feature columns besides the target {columns[t]!r}")
    X, y = _read_csv_fast(path, len(columns), has_header, features, t)
    if X is None:
        X, y = _read_csv_checked(path, columns, has_header, features, t)
    X = X.astype(dtype, copy=False)
    if return_names:
        return X, y, [columns[i] for i in features], None if t is None else columns[t]
    return X, y


def _read_csv_fast(path, n_columns, has_header, features, t):
    """NumPy's C parser for the common case of an all-numeric, finite, rectangular file;
    (None, None) when that does not hold, for the checked reader to explain why."""
    try:
        with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            skip = 0
            for skip, line in enumerate(text, 1):
                if line.strip():
                    break
            if not has_header:
                skip -= 1
            text.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = np.loadtxt(text, delimiter=",", quotechar='"', comments=None,
                                   skiprows=skip, ndmin=2, dtype=np.float64)
    except (ValueError, UnicodeDecodeError, csv.Error):
        return None, None
    if table.shape[1] != n_columns or table.shape[0] == 0 or not np.isfinite(table).all():
        return None, None
    y = None if t is None else _target_array(table[:, t])
    return np.ascontiguousarray(table[:, features]), y


def _target_array(values):
    """Whole numbers as int64 labels, other numbers as float64."""
    if np.array_equal(values, np.round(values)) and np.abs(values).max(initial=0) < 2 ** 53:
        return values.astype(np.int64)
    return values


def _read_csv_checked(path, columns, has_header, features, t):
    """A cell-by-cell reader: slower, and names the line and value of any bad cell."""
    name = os.fspath(path)
    rows, targets, target_lines = [], [], []
    first = True
    for line, cells in _csv_rows(path):
        if first and has_header:
            first = False
            continue
        first = False
        if len(cells) != len(columns):
            raise DataFileError(f"{name}, line {line}: {len(cells)} fields, expected "
                                f"{len(columns)} like the {'header' if has_header else 'first line'}")
        row = []
        for i in features:
            try:
                value = float(cells[i])
            except ValueError:
                value = None
            if value is None or not math.isfinite(value):
                what = "an empty cell" if cells[i] == "" else f"{cells[i]!r}"
                raise DataFileError(f"{name}, line {line}, column {columns[i]!r}: {what} is not "
                                    f"a {'finite ' if value is not None else ''}number")
            row.append(value)
        rows.append(row)
        if t is not None:
            if cells[t] == "":
                raise DataFileError(f"{name}, line {line}: the target column {columns[t]!r} is empty")
            targets.append(cells[t])
            target_lines.append(line)
    if not rows:
        raise DataFileError(f"{name} holds a header but no data rows")
    X = np.array(rows, dtype=np.float64).reshape(len(rows), len(features))
    return X, None if t is None else _parse_targets(targets, target_lines, columns[t], name)


def _parse_targets(cells, lines, column, name):
    """Numbers when every cell is one (then finite, as for features), else class names."""
    try:
        values = np.array([float(cell) for cell in cells])
    except ValueError:
        return np.array(cells)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = bad[0]
        raise DataFileError(f"{name}, line {lines[i]}, column {column!r}: {cells[i]!r} is not "
                            f"a finite number")
    return _target_array(values)


# ------------------------------------------------------------------ .npz
def load_npz(path, dtype=np.float32):
    """``(X, y)`` from an .npz file holding arrays named X and y (y may be absent: then None).

    X of shape (n_samples, ...) is flattened to (n_samples, n_features) in `dtype`; y is
    returned as stored (integer labels, numbers, or strings).
    """
    name = _check_file(path)
    try:
        with np.load(name, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise DataFileError(f"{name} holds a single array; expected an .npz with arrays X and y")
            if "X" not in data.files:
                raise DataFileError(f"{name} has no array named X; it holds "
                                    f"{', '.join(data.files) or 'no arrays'}")
            X = data["X"]
            y = data["y"] if "y" in data.files else None
    except DataFileError:
        raise
    except (AttributeError, OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataFileError(f"{name} is not a readable .npz file: {error}") from None
    if X.ndim < 2 or X.shape[0] == 0:
        raise DataFileError(f"{name}: X has shape {X.shape}; expected (n_samples, n_features) "
                            f"with at least one sample")
    if X.dtype.kind not in "biuf":
        raise DataFileError(f"{name}: X holds {X.dtype} values, not numbers")
    X = np.ascontiguousarray(X.reshape(X.shape[0], -1), dtype=dtype)
    if not np.isfinite(X).all():
        raise DataFileError(f"{name}: X holds NaN or infinite values")
    if y is not None:
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise DataFileError(f"{name}: y has shape {y.shape} but X holds {X.shape[0]} samples; "
                                f"expected y of shape ({X.shape[0]},) or ({X.shape[0]}, k)")
        if y.dtype.kind not in "biufU":
            raise DataFileError(f"{name}: y holds {y.dtype} values; expected numbers or class names")
        if y.dtype.kind == "f":
            if not np.isfinite(y).all():
                raise DataFileError(f"{name}: y holds NaN or infinite values")
        if y.dtype.kind in "biu":
            y = y.astype(np.int64)
    return X, y


# ------------------------------------------------------------------ MNIST IDX
def _read_idx(path, magic, what):
    """(dimensions, raw bytes) of an IDX file of unsigned bytes with the given magic number."""
    name = os.fspath(path)
    try:
        with _open_binary(path) as stream:
            data = stream.read()
    except (OSError, EOFError) as error:
        raise DataFileError(f"{name} could not be read (a damaged gzip file?): {error}") from None
    n_dims = magic & 0xFF
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
        raise DataFileError(f"{name} is not an IDX {what} file (magic number {found}, expected {magic})")
    header = 4 + 4 * n_dims
    if len(data) < header:
        raise DataFileError(f"{name} is truncated: its IDX header is incomplete")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(n_dims))
    expected = math.prod(dims)
    if len(data) - header != expected:
        raise DataFileError(f"{name} holds {len(data) - header} bytes of {what} after its header, "
                            f"but its header announces {' x '.join(map(str, dims))} = {expected}")
    return dims, np.frombuffer(data, dtype=np.uint8, offset=header)


def load_mnist_idx(images_path, labels_path=None, dtype=np.float32):
    """MNIST-style IDX files (gzipped or not): images (magic 2051) and labels (magic 2049).

    Returns ``(X, y)``: X of shape (n_images, rows*cols) with pixels scaled to [0, 1],
    and int64 labels (None without a labels file).
    """
    (n, rows, cols), pixels = _read_idx(images_path, IDX_IMAGES, "images")
    if n == 0:
        raise DataFileError(f"{os.fspath(images_path)} holds no images")
    X = (pixels.reshape(n, rows * cols) / 255.0).astype(dtype)
    if labels_path is None:
        return X, None
    (n_labels,), labels = _read_idx(labels_path, IDX_LABELS, "labels")
    if n_labels != n:
        raise DataFileError(f"{os.fspath(images_path)} holds {n} images but "
                            f"{os.fspath(labels_path)} holds {n_labels} labels")
    return X, labels.astype(np.int64)
