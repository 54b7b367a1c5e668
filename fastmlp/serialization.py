"""Saving and loading models as .npz files: plain arrays only, never pickles.

A file holds the configuration as JSON text (with the optimiser's step count and which
optimiser its state belongs to), the flat parameter buffer, the optimiser state buffers
(SGD's momentum or Adam's first moment, and Adam's second moment) and a SHA-256
checksum over all of them, so a truncated or altered file is refused rather than
half-loaded. A loaded model resumes training exactly where the saved one stopped.

Format versions: 2 (this one); 1, without the second moment, step count and state
owner, is still read: its state is SGD's (second moment 0, no steps counted).
"""

import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

from .errors import ModelFileError

MAGIC = "fastmlp-model"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# Arrays every version holds, and those added by later versions.
_KEYS = ("magic", "format_version", "config", "params", "velocity", "checksum")
_KEYS_ADDED = {2: ("second_moment",)}


def _checksum(config_text, params, *state):
    """SHA-256 over the config text, the parameters' dtype, the parameters and the
    optimiser state arrays in order (version 1: the velocity only)."""
    digest = hashlib.sha256(config_text.encode())
    digest.update(str(params.dtype).encode())
    digest.update(np.ascontiguousarray(params).tobytes())
    for array in state:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _versions_text():
    *first, last = READABLE_VERSIONS
    return f"versions {', '.join(map(str, first))} and {last}" if first else f"version {last}"


def save_model(model, path):
    config = {
        "layer_sizes": list(model.layer_sizes),
        "activation": list(model.activations),
        "output_activation": model.output_activation,
        "loss": model.loss_name,
        "dtype": model.dtype.name,
        "init": model.init,
        "seed": model.seed,
        "n_threads": model.n_threads,
        "has_velocity": model._has_velocity,
        "steps": int(model._steps[0]),
        "state_optimizer": model._state_optimizer,
        "rng_state": model._rng.bit_generator.state,
        "metadata": model.metadata,
    }
    try:
        config_text = json.dumps(config, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"model.metadata must hold only JSON values (dicts, lists, strings, "
                        f"finite numbers, booleans, None): {error}") from None
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".fastmlp-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            checksum = _checksum(config_text, model.params, model._velocity, model._second_moment)
            np.savez(stream, magic=np.array(MAGIC), format_version=np.array(FORMAT_VERSION),
                     config=np.array(config_text), params=model.params, velocity=model._velocity,
                     second_moment=model._second_moment, checksum=np.array(checksum))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def load(path):
    """Read a model written by ``MLP.save``; raises ModelFileError for anything else."""
    from .model import MLP, OPTIMIZERS

    name = os.fspath(path)
    with open(name, "rb") as stream:  # a missing file raises FileNotFoundError here
        head = stream.read(6)
    if not head.startswith(b"PK"):
        kind = "a single NumPy array" if head.startswith(b"\x93NUMPY") else "not an .npz archive"
        raise ModelFileError(f"{name} is not a fastmlp model file ({kind})")
    try:
        with np.load(name, allow_pickle=False) as data:
            missing = [key for key in _KEYS if key not in data.files]
            if missing:
                raise ModelFileError(f"{name} is not a fastmlp model file (missing {', '.join(missing)})")
            if data["magic"].shape != () or str(data["magic"][()]) != MAGIC:
                raise ModelFileError(f"{name} is not a fastmlp model file")
            version = int(data["format_version"][()])
            if version not in READABLE_VERSIONS:
                raise ModelFileError(f"{name} has model format version {version}; this fastmlp "
                                     f"reads {_versions_text()}")
            added = [key for v in READABLE_VERSIONS if v <= version
                     for key in _KEYS_ADDED.get(v, ())]
            missing = [key for key in added if key not in data.files]
            if missing:
                raise ModelFileError(f"{name} is not a valid version {version} fastmlp model file "
                                     f"(missing {', '.join(missing)})")
            config_text = str(data["config"][()])
            params = data["params"]
            state = [data["velocity"]] + [data[key] for key in added]
            stored_checksum = str(data["checksum"][()])
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{name} is not a readable fastmlp model file "
                             f"(truncated or corrupted?): {error}") from None
    if _checksum(config_text, params, *state) != stored_checksum:
        raise ModelFileError(f"{name} failed its integrity check: the file was modified or "
                             f"corrupted after it was saved")
    try:
        config = json.loads(config_text)
        model = MLP(config["layer_sizes"], activation=config["activation"],
                    output_activation=config["output_activation"], loss=config["loss"],
                    dtype=config["dtype"], init=config["init"], seed=config["seed"],
                    n_threads=config["n_threads"])
        if params.shape != model.params.shape or params.dtype != model.params.dtype:
            raise ValueError(f"parameters of shape {params.shape} and dtype {params.dtype} do not "
                             f"fit the network (expected {model.params.shape}, {model.params.dtype})")
        velocity = state[0]
        if velocity.shape != params.shape or velocity.dtype != params.dtype:
            raise ValueError("the momentum buffer does not match the parameters")
        if version >= 2:
            second_moment = state[1]
            if second_moment.shape != params.shape or second_moment.dtype != params.dtype:
                raise ValueError("the second moment buffer does not match the parameters")
            steps, state_optimizer = config["steps"], config["state_optimizer"]
            if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps < 2 ** 63:
                raise ValueError(f"its step count {steps!r} is not an integer >= 0")
            if not isinstance(state_optimizer, str) or state_optimizer not in OPTIMIZERS:
                raise ValueError(f"its optimiser state belongs to {state_optimizer!r}, not one "
                                 f"of {sorted(OPTIMIZERS)}")
        else:
            # Version 1 kept SGD's momentum only.
            second_moment, steps, state_optimizer = None, 0, "sgd"
        model._rng.bit_generator.state = config["rng_state"]
        model.metadata = config.get("metadata", {})
        if not isinstance(model.metadata, dict):
            raise ValueError("its metadata is not a JSON object")
        model._has_velocity = bool(config["has_velocity"])
    except KeyError as error:
        raise ModelFileError(f"{name} holds an invalid fastmlp model: its config lacks "
                             f"{error}") from None
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{name} holds an invalid fastmlp model: {error}") from None
    model.params[...] = params
    model._velocity[...] = velocity
    if second_moment is not None:
        model._second_moment[...] = second_moment
    model._steps[0] = steps
    model._state_optimizer = state_optimizer
    return model
