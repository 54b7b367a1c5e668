"""Saving and loading models as .npz files: plain arrays only, never pickles.

A file holds the configuration as JSON text, the flat parameter and momentum
buffers, and a SHA-256 checksum over all three, so a truncated or altered file
is refused rather than half-loaded.
"""

import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

from .errors import ModelFileError

MAGIC = "fastmlp-model"
FORMAT_VERSION = 1
_KEYS = ("magic", "format_version", "config", "params", "velocity", "checksum")


def _checksum(config_text, params, velocity):
    digest = hashlib.sha256(config_text.encode())
    digest.update(str(params.dtype).encode())
    digest.update(np.ascontiguousarray(params).tobytes())
    digest.update(np.ascontiguousarray(velocity).tobytes())
    return digest.hexdigest()


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
            np.savez(stream, magic=np.array(MAGIC), format_version=np.array(FORMAT_VERSION),
                     config=np.array(config_text), params=model.params, velocity=model._velocity,
                     checksum=np.array(_checksum(config_text, model.params, model._velocity)))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def load(path):
    """Read a model written by ``MLP.save``; raises ModelFileError for anything else."""
    from .model import MLP

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
            if version != FORMAT_VERSION:
                raise ModelFileError(f"{name} has model format version {version}; this fastmlp "
                                     f"reads version {FORMAT_VERSION}")
            config_text = str(data["config"][()])
            params = data["params"]
            velocity = data["velocity"]
            stored_checksum = str(data["checksum"][()])
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{name} is not a readable fastmlp model file "
                             f"(truncated or corrupted?): {error}") from None
    if _checksum(config_text, params, velocity) != stored_checksum:
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
        if velocity.shape != params.shape or velocity.dtype != params.dtype:
            raise ValueError("the momentum buffer does not match the parameters")
        model._rng.bit_generator.state = config["rng_state"]
        model.metadata = config.get("metadata", {})
        if not isinstance(model.metadata, dict):
            raise ValueError("its metadata is not a JSON object")
        model._has_velocity = bool(config["has_velocity"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{name} holds an invalid fastmlp model: {error}") from None
    model.params[...] = params
    model._velocity[...] = velocity
    return model
