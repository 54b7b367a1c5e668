"""MLP.save / fastmlp.load: exact round trips (the optimiser state included, so training
resumes exactly), files of the previous format version, atomic writes, and refusal of
anything that is not an intact fastmlp model file, without ever unpickling."""

import hashlib
import json
import os
import pathlib
import pickle
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP, ModelFileError
from fastmlp import serialization

DATA = pathlib.Path(__file__).parent / "data"


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


# ------------------------------------------------------------- Adam state
def adam_data(dtype="float64"):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(26, 5)).astype(dtype)
    y = rng.integers(0, 3, 26)
    weights = rng.uniform(0, 2, 26)
    return X, y, weights


def adam_net(dtype="float64"):
    return MLP([5, 6, 3], activation="tanh", loss="cross_entropy", dtype=dtype, seed=11)


ADAM_FIT = dict(batch_size=6, lr=0.01, optimizer="adam", betas=(0.8, 0.99), epsilon=1e-6,
                weight_decay=1e-3, shuffle=True)


def test_save_load_keeps_the_adam_state(dtype, tmp_path):
    X, y, weights = adam_data(dtype)
    net = adam_net(dtype)
    net.fit(X, y, epochs=2, sample_weight=weights, **ADAM_FIT)
    net.save(tmp_path / "m.npz")
    copy = fastmlp.load(tmp_path / "m.npz")
    assert copy._state_optimizer == "adam" and copy._steps[0] == net._steps[0] == 10
    assert copy._second_moment.dtype == net._second_moment.dtype
    assert np.array_equal(copy._second_moment, net._second_moment) and copy._second_moment.any()
    assert np.array_equal(copy._velocity, net._velocity)
    assert np.array_equal(copy.params, net.params)


@pytest.mark.parametrize("resume", ["fit", "step"])
def test_training_with_adam_resumes_exactly_after_save_and_load(resume, dtype, tmp_path):
    X, y, weights = adam_data(dtype)
    uninterrupted = adam_net(dtype)
    interrupted = adam_net(dtype)
    if resume == "fit":
        uninterrupted.fit(X, y, epochs=4, sample_weight=weights, **ADAM_FIT)
        interrupted.fit(X, y, epochs=2, sample_weight=weights, **ADAM_FIT)
    else:
        settings = dict(lr=0.01, optimizer="adam", betas=(0.8, 0.99), weight_decay=1e-3)
        for _ in range(6):
            uninterrupted.step(X, y, sample_weight=weights, **settings)
        for _ in range(3):
            interrupted.step(X, y, sample_weight=weights, **settings)
    interrupted.save(tmp_path / "m.npz")
    resumed = fastmlp.load(tmp_path / "m.npz")
    # Without the Adam state the continuation would go elsewhere: the check has teeth.
    amnesiac = fastmlp.load(tmp_path / "m.npz")
    amnesiac._second_moment[...] = 0
    amnesiac._steps[0] = 0
    for net in (resumed, amnesiac):
        if resume == "fit":
            net.fit(X, y, epochs=2, sample_weight=weights, **ADAM_FIT)
        else:
            for _ in range(3):
                net.step(X, y, sample_weight=weights, **settings)
    assert np.array_equal(resumed.params, uninterrupted.params)
    assert np.array_equal(resumed._velocity, uninterrupted._velocity)
    assert np.array_equal(resumed._second_moment, uninterrupted._second_moment)
    assert resumed._steps[0] == uninterrupted._steps[0]
    assert not np.array_equal(amnesiac.params, uninterrupted.params)


def test_save_load_keeps_the_sgd_step_count_and_owner(tmp_path):
    net, _, _ = trained()
    net.save(tmp_path / "m.npz")
    copy = fastmlp.load(tmp_path / "m.npz")
    assert copy._state_optimizer == "sgd" and copy._steps[0] == net._steps[0] == 10
    assert not copy._second_moment.any()


def test_switching_to_adam_after_load_starts_adam_afresh(tmp_path):
    # A loaded SGD state is SGD's: Adam after load starts from zero moments, as it would
    # on the original model.
    net, X, y = trained()
    net.save(tmp_path / "m.npz")
    copy = fastmlp.load(tmp_path / "m.npz")
    for model in (net, copy):
        model.fit(X, y, epochs=1, batch_size=7, lr=0.01, optimizer="adam")
    assert np.array_equal(copy.params, net.params)
    assert np.array_equal(copy._second_moment, net._second_moment)
    assert copy._steps[0] == net._steps[0] == 5


# ------------------------------------------------------- format version 1
def write_version_1(model, path):
    """What fastmlp's format version 1 wrote: no second moment, step count or state owner
    (its config and checksum are version 1's, written out here)."""
    config = {"layer_sizes": list(model.layer_sizes), "activation": list(model.activations),
              "output_activation": model.output_activation, "loss": model.loss_name,
              "dtype": model.dtype.name, "init": model.init, "seed": model.seed,
              "n_threads": model.n_threads, "has_velocity": model._has_velocity,
              "rng_state": model._rng.bit_generator.state, "metadata": model.metadata}
    text = json.dumps(config, sort_keys=True, allow_nan=False)
    with open(path, "wb") as stream:
        np.savez(stream, magic=np.array("fastmlp-model"), format_version=np.array(1),
                 config=np.array(text), params=model.params, velocity=model._velocity,
                 checksum=checksum_of(text, model.params, model._velocity))
    return path


def test_format_version_is_2():
    assert serialization.FORMAT_VERSION == 2
    assert serialization.READABLE_VERSIONS == (1, 2)


def test_a_file_written_by_format_version_1_still_loads():
    # tests/data/model_v1.npz was written by fastmlp's version 1 writer (commit 117fb5e):
    # MLP([3, 4, 2], activation="tanh", dtype="float64", init="he", seed=7) after two
    # epochs of SGD with momentum.
    path = DATA / "model_v1.npz"
    raw = arrays_of(path)
    assert int(raw["format_version"]) == 1 and "second_moment" not in raw
    net = fastmlp.load(path)
    assert net.layer_sizes == (3, 4, 2) and net.activations == ("tanh",) and net.seed == 7
    assert net.dtype == np.float64 and net.init == "he" and net.loss_name == "mse"
    assert np.array_equal(net.params, raw["params"])
    assert np.array_equal(net._velocity, raw["velocity"]) and net._velocity.any()
    assert net._has_velocity is True
    # What version 1 did not keep: SGD's state, no second moment, no steps counted.
    assert net._state_optimizer == "sgd" and net._steps[0] == 0 and not net._second_moment.any()
    assert net.metadata == {"written_by": "fastmlp model format version 1"}
    config = json.loads(str(raw["config"][()]))
    assert net._rng.bit_generator.state == config["rng_state"]


def test_training_continues_from_a_version_1_file_as_from_its_state(tmp_path):
    # SGD with momentum resumes exactly: version 1 kept everything SGD needs.
    net, X, y = trained()
    copy = fastmlp.load(write_version_1(net, tmp_path / "v1.npz"))
    assert copy._state_optimizer == "sgd" and not copy._second_moment.any()
    assert np.array_equal(copy.params, net.params) and np.array_equal(copy._velocity, net._velocity)
    h1 = net.fit(X, y, epochs=2, batch_size=7, lr=0.05, momentum=0.9, nesterov=True)
    h2 = copy.fit(X, y, epochs=2, batch_size=7, lr=0.05, momentum=0.9, nesterov=True)
    assert np.array_equal(copy.params, net.params)
    assert np.array_equal(copy._velocity, net._velocity)
    assert h1["loss"] == h2["loss"]
    # A version 1 file saved again is a version 2 file.
    copy.save(tmp_path / "v2.npz")
    assert int(arrays_of(tmp_path / "v2.npz")["format_version"]) == 2


def test_a_version_1_file_is_still_checked_for_integrity(tmp_path):
    net, _, _ = trained()
    path = write_version_1(net, tmp_path / "v1.npz")
    params = arrays_of(path)["params"].copy()
    params[0] += 1e-6
    with pytest.raises(ModelFileError, match=r"failed its integrity check"):
        fastmlp.load(rewrite(path, tmp_path / "tampered.npz", params=params))


def test_a_version_1_file_with_a_version_2_checksum_is_refused(tmp_path):
    # The checksum covers the state arrays the version lists, no more and no fewer.
    net, _, _ = trained()
    net.save(tmp_path / "m.npz")
    path = rewrite(tmp_path / "m.npz", tmp_path / "relabelled.npz", format_version=np.array(1))
    with pytest.raises(ModelFileError, match=r"failed its integrity check"):
        fastmlp.load(path)


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


@pytest.mark.parametrize("version", [0, 3, 99])
def test_load_rejects_another_format_version(model_file, tmp_path, version):
    path = rewrite(model_file, tmp_path / "bad.npz", format_version=np.array(version))
    with pytest.raises(ModelFileError,
                       match=rf"format version {version}; this fastmlp reads versions 1 and 2"):
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


@pytest.mark.parametrize("key", ["params", "velocity", "second_moment"])
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


def checksum_of(config, params, *state):
    """The file's checksum, written out here: SHA-256 over the config text, the params'
    dtype name, then the params and state arrays' bytes."""
    digest = hashlib.sha256(config.encode())
    digest.update(str(params.dtype).encode())
    for array in (params,) + state:
        digest.update(np.ascontiguousarray(array).tobytes())
    return np.array(digest.hexdigest())


def rewrite_consistent(path, out, config=None, **arrays):
    """Like rewrite, with the checksum recomputed, so only the loader's other checks can
    refuse the result; config: a function changing the config dict."""
    contents = arrays_of(path)
    contents.update(arrays)
    text = str(contents["config"][()])
    if config is not None:
        changed = json.loads(text)
        config(changed)
        text = json.dumps(changed, sort_keys=True)
    contents["config"] = np.array(text)
    state = [contents["velocity"]] + ([contents["second_moment"]]
                                      if int(contents["format_version"]) >= 2 else [])
    contents["checksum"] = checksum_of(text, contents["params"], *state)
    with open(out, "wb") as stream:
        np.savez(stream, **contents)
    return out


def test_checksum_written_out_here_matches_the_saved_one(model_file):
    arrays = arrays_of(model_file)
    expected = checksum_of(str(arrays["config"][()]), arrays["params"], arrays["velocity"],
                           arrays["second_moment"])
    assert str(arrays["checksum"][()]) == str(expected[()])


def test_load_rejects_a_consistent_file_whose_params_do_not_fit(model_file, tmp_path):
    arrays = arrays_of(model_file)
    path = rewrite_consistent(model_file, tmp_path / "short.npz", params=arrays["params"][:-1],
                              velocity=arrays["velocity"][:-1],
                              second_moment=arrays["second_moment"][:-1])
    with pytest.raises(ModelFileError, match=r"invalid fastmlp model.*do not fit"):
        fastmlp.load(path)


@pytest.mark.parametrize("change,match", [
    (lambda arrays: dict(second_moment=arrays["second_moment"][:-1]),
     r"second moment buffer does not match"),
    (lambda arrays: dict(second_moment=arrays["second_moment"].astype(np.float32)),
     r"second moment buffer does not match"),
    (lambda arrays: dict(velocity=arrays["velocity"][:-1]), r"momentum buffer does not match"),
], ids=["second_moment_short", "second_moment_float32", "velocity_short"])
def test_load_rejects_a_consistent_file_whose_state_does_not_fit(model_file, tmp_path, change,
                                                                 match):
    path = rewrite_consistent(model_file, tmp_path / "bad.npz", **change(arrays_of(model_file)))
    with pytest.raises(ModelFileError, match=rf"invalid fastmlp model.*{match}"):
        fastmlp.load(path)


@pytest.mark.parametrize("key,value,match", [
    ("steps", -1, r"step count -1 is not an integer >= 0"),
    ("steps", 2.5, r"step count 2.5 is not an integer"),
    ("steps", True, r"step count True is not an integer"),
    ("steps", None, r"step count None"),
    ("steps", 2 ** 63, r"step count 9223372036854775808 is not an integer >= 0"),
    ("state_optimizer", "rmsprop", r"optimiser state belongs to 'rmsprop'"),
    ("state_optimizer", ["adam"], r"optimiser state belongs to \['adam'\]"),
    ("steps", "missing", r"its config lacks 'steps'"),
    ("state_optimizer", "missing", r"its config lacks 'state_optimizer'"),
], ids=["steps_negative", "steps_float", "steps_bool", "steps_null", "steps_overflow",
        "optimizer_unknown",
        "optimizer_list", "steps_missing", "optimizer_missing"])
def test_load_rejects_a_consistent_file_with_a_bad_optimiser_state(model_file, tmp_path, key,
                                                                   value, match):
    def change(config):
        if value == "missing":
            del config[key]
        else:
            config[key] = value

    path = rewrite_consistent(model_file, tmp_path / "bad.npz", config=change)
    with pytest.raises(ModelFileError, match=rf"invalid fastmlp model.*{match}"):
        fastmlp.load(path)


def test_load_rejects_a_version_2_file_without_its_second_moment(model_file, tmp_path):
    path = rewrite(model_file, tmp_path / "bad.npz", drop=["second_moment"])
    with pytest.raises(ModelFileError,
                       match=r"not a valid version 2 fastmlp model file \(missing second_moment\)"):
        fastmlp.load(path)


# ----------------------------------------------------------------- no pickles
class Trap:
    """Unpickling this creates the file `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("key", ["params", "config", "checksum", "second_moment"])
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
