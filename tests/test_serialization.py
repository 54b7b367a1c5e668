"""MLP.save / fastmlp.load: exact round trips, atomic writes, and refusal of anything
that is not an intact fastmlp model file, without ever unpickling."""

import os
import pickle
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP, ModelFileError


def trained(dtype="float64", loss="mse", activation=("tanh", "relu"), n_threads=None):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 5))
    if loss == "cross_entropy":
        y = rng.integers(0, 3, 30)
    elif loss == "binary_cross_entropy":
        y = rng.uniform(0, 1, (30, 3))
    else:
        y = rng.normal(size=(30, 3))
    net = MLP([5, 6, 4, 3], activation=list(activation), loss=loss, dtype=dtype, init="he",
              seed=42, n_threads=n_threads)
    net.fit(X, y, epochs=2, batch_size=7, lr=0.05, momentum=0.9, nesterov=True)
    return net, X, y


@pytest.fixture
def model_file(tmp_path):
    net, X, y = trained()
    path = tmp_path / "model.npz"
    net.save(path)
    return path


def arrays_of(path):
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def rewrite(path, out, drop=(), **changes):
    """Write the arrays of the model file `path` to `out`, with `changes`, without `drop`."""
    arrays = arrays_of(path)
    arrays.update(changes)
    for key in drop:
        del arrays[key]
    with open(out, "wb") as stream:
        np.savez(stream, **arrays)
    return out


# ------------------------------------------------------------------ round trip
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "binary_cross_entropy"])
def test_save_load_round_trip_is_exact(loss, dtype, tmp_path):
    net, X, y = trained(dtype=dtype, loss=loss)
    net.save(tmp_path / "m.npz")
    copy = fastmlp.load(tmp_path / "m.npz")
    assert copy.params.dtype == net.params.dtype
    assert np.array_equal(copy.params, net.params)
    assert np.array_equal(copy._velocity, net._velocity) and copy._velocity.any()
    assert copy._has_velocity is True
    for attribute in ("layer_sizes", "activations", "output_activation", "loss_name", "dtype",
                      "init", "seed", "n_threads"):
        assert getattr(copy, attribute) == getattr(net, attribute), attribute
    assert all(np.shares_memory(W, copy.params) for W in copy.weights + copy.biases)
    assert np.array_equal(copy.predict(X), net.predict(X))
    assert copy.loss(X, y) == net.loss(X, y)


def test_training_after_load_continues_exactly(tmp_path):
    net, X, y = trained()
    net.save(str(tmp_path / "m.npz"))  # a str path works as well as a Path
    copy = fastmlp.load(str(tmp_path / "m.npz"))
    # shuffle=True: the generator's state must travel too; momentum: the velocity.
    h1 = net.fit(X, y, epochs=2, batch_size=7, lr=0.05, momentum=0.9, nesterov=True)
    h2 = copy.fit(X, y, epochs=2, batch_size=7, lr=0.05, momentum=0.9, nesterov=True)
    assert np.array_equal(copy.params, net.params)
    assert np.array_equal(copy._velocity, net._velocity)
    assert h1["loss"] == h2["loss"]


def test_fresh_model_round_trip_has_no_velocity(tmp_path):
    net = MLP([3, 2], seed=1, n_threads=1)
    net.save(tmp_path / "m.npz")
    copy = fastmlp.load(tmp_path / "m.npz")
    assert copy._has_velocity is False and not copy._velocity.any()
    assert copy.n_threads == 1 and copy.dtype == np.float32
    assert np.array_equal(copy.params, net.params)


def test_saved_file_holds_plain_arrays_only(model_file):
    with zipfile.ZipFile(model_file) as archive:
        assert all(name.endswith(".npy") for name in archive.namelist())
    for key, array in arrays_of(model_file).items():  # allow_pickle=False: no object arrays
        assert array.dtype != object, key


def test_save_overwrites_an_existing_file(tmp_path):
    path = tmp_path / "m.npz"
    MLP([3, 2], seed=1).save(path)
    net, _, _ = trained()
    net.save(path)
    assert np.array_equal(fastmlp.load(path).params, net.params)
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    MLP([3, 2], seed=1).save(path)
    before = path.read_bytes()

    def failing_savez(stream, **arrays):
        stream.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    net, _, _ = trained()
    with pytest.raises(OSError, match="disk full"):
        net.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.npz"], "a temporary file was left behind"
    assert np.array_equal(fastmlp.load(path).params, MLP([3, 2], seed=1).params)


# ------------------------------------------------------------- files refused
def test_load_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastmlp.load(tmp_path / "nothing.npz")


def test_load_rejects_a_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("layer_sizes: [4, 2]\n")
    with pytest.raises(ModelFileError, match=r"not a fastmlp model file \(not an \.npz archive\)"):
        fastmlp.load(path)


def test_load_rejects_an_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"not a fastmlp model file \(not an \.npz archive\)"):
        fastmlp.load(path)


def test_load_rejects_a_npy_file(tmp_path):
    path = tmp_path / "params.npy"
    np.save(path, np.arange(5.0))
    with pytest.raises(ModelFileError, match=r"not a fastmlp model file \(a single NumPy array\)"):
        fastmlp.load(path)


def test_load_rejects_an_npz_lacking_keys(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, params=np.zeros(3))
    with pytest.raises(ModelFileError, match=r"not a fastmlp model file \(missing magic, "
                                             r"format_version, config, velocity, checksum\)"):
        fastmlp.load(path)


def test_load_rejects_a_zip_of_other_things(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ModelFileError, match=r"missing magic"):
        fastmlp.load(path)


def test_load_rejects_a_model_file_without_its_checksum(model_file, tmp_path):
    path = rewrite(model_file, tmp_path / "bad.npz", drop=["checksum"])
    with pytest.raises(ModelFileError, match=r"missing checksum"):
        fastmlp.load(path)


def test_load_rejects_wrong_magic(model_file, tmp_path):
    path = rewrite(model_file, tmp_path / "bad.npz", magic=np.array("other-model"))
    with pytest.raises(ModelFileError, match=r"is not a fastmlp model file"):
        fastmlp.load(path)


@pytest.mark.parametrize("version", [0, 2, 99])
def test_load_rejects_another_format_version(model_file, tmp_path, version):
    path = rewrite(model_file, tmp_path / "bad.npz", format_version=np.array(version))
    with pytest.raises(ModelFileError, match=rf"format version {version}; this fastmlp reads version 1"):
        fastmlp.load(path)


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.01])
def test_load_rejects_a_truncated_file(model_file, tmp_path, fraction):
    data = model_file.read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(ModelFileError, match=r"truncated or corrupted"):
        fastmlp.load(path)


def test_load_rejects_a_flipped_byte_in_the_parameters(model_file, tmp_path):
    params = arrays_of(model_file)["params"]
    data = bytearray(model_file.read_bytes())
    at = bytes(data).find(params.tobytes())  # np.savez stores arrays uncompressed
    assert at > 0
    data[at + params.nbytes // 2] ^= 0x01
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(data))
    # The zip CRC or the model's own checksum catches it.
    with pytest.raises(ModelFileError, match=r"corrupted"):
        fastmlp.load(path)


@pytest.mark.parametrize("key", ["params", "velocity"])
def test_load_rejects_modified_arrays_with_the_old_checksum(model_file, tmp_path, key):
    array = arrays_of(model_file)[key].copy()
    array[3] += 1e-6
    path = rewrite(model_file, tmp_path / "tampered.npz", **{key: array})
    with pytest.raises(ModelFileError, match=r"failed its integrity check"):
        fastmlp.load(path)


def test_load_rejects_a_modified_config_with_the_old_checksum(model_file, tmp_path):
    config = str(arrays_of(model_file)["config"][()]).replace('"tanh"', '"sigmoid"')
    path = rewrite(model_file, tmp_path / "tampered.npz", config=np.array(config))
    with pytest.raises(ModelFileError, match=r"failed its integrity check"):
        fastmlp.load(path)


def test_load_rejects_a_consistent_file_whose_params_do_not_fit(model_file, tmp_path):
    # Checksum recomputed, so only the shape check can catch it.
    import hashlib

    arrays = arrays_of(model_file)
    params, velocity = arrays["params"][:-1], arrays["velocity"][:-1]
    config = str(arrays["config"][()])
    digest = hashlib.sha256(config.encode())
    digest.update(str(params.dtype).encode())
    digest.update(params.tobytes())
    digest.update(velocity.tobytes())
    path = rewrite(model_file, tmp_path / "short.npz", params=params, velocity=velocity,
                   checksum=np.array(digest.hexdigest()))
    with pytest.raises(ModelFileError, match=r"invalid fastmlp model.*do not fit"):
        fastmlp.load(path)


# ----------------------------------------------------------------- no pickles
class Trap:
    """Unpickling this creates the file `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("key", ["params", "config", "checksum"])
def test_load_refuses_object_arrays_without_unpickling(model_file, tmp_path, key):
    marker = tmp_path / "unpickled"
    trap = np.empty(1, dtype=object)
    trap[0] = Trap(marker)
    arrays = arrays_of(model_file)
    arrays[key] = trap
    path = tmp_path / "trap.npz"
    np.savez(path, **arrays)  # allow_pickle defaults to True when saving
    with pytest.raises(ModelFileError):
        fastmlp.load(path)
    assert not marker.exists(), "load unpickled an object array"


def test_load_refuses_a_pickle_file_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Trap(marker)))
    with pytest.raises(ModelFileError):
        fastmlp.load(path)
    assert not marker.exists()


def test_model_file_error_is_a_value_error():
    assert issubclass(ModelFileError, ValueError)
    assert fastmlp.ModelFileError is ModelFileError


def test_metadata_round_trips_and_is_covered_by_the_checksum(tmp_path):
    net = fastmlp.MLP([3, 2], seed=0)
    net.metadata = {"columns": ["a", "b", "c"], "mean": [0.5, 1.0, -2.0], "target": "y", "n": 3}
    path = tmp_path / "m.npz"
    net.save(path)
    assert fastmlp.load(path).metadata == net.metadata
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["config"] = np.array(str(arrays["config"][()]).replace('"target": "y"', '"target": "z"'))
    np.savez(path, **arrays)
    with pytest.raises(fastmlp.ModelFileError, match="integrity"):
        fastmlp.load(path)


@pytest.mark.parametrize("bad", [{"x": object()}, {"x": float("nan")}, {"x": np.zeros(2)}])
def test_saving_metadata_that_is_not_json_raises_and_writes_nothing(bad, tmp_path):
    net = fastmlp.MLP([3, 2], seed=0)
    net.metadata = bad
    path = tmp_path / "m.npz"
    with pytest.raises(TypeError, match="metadata"):
        net.save(path)
    assert not path.exists() and list(tmp_path.iterdir()) == []
