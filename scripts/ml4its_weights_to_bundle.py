"""Turns a published ML4ITS/mtad-gat-pytorch `model.pt` (a state dict saved by torch) into a
flow model bundle, so that `flow step evaluate` scores and judges the reference's own trained
weights exactly as it judges flow's (README, "Accuracy on full SMAP" and "on full MSL").

    python3 scripts/ml4its_weights_to_bundle.py <model.pt> <config.txt> <flow process run dir> <out dir>

<model.pt> and <config.txt> come from the reference's `output/<DATASET>/<date>/` (for
SMAP: output/SMAP/27062021_112545). <flow process run dir> is the outputs of flow's `process`
step on the same dataset (its `preprocessor.json`: min-max statistics fitted on the training
split, as the reference's `normalize_data` fits them; target dims [0] for SMAP/MSL). Writes
<out>/flow-model.json and <out>/weights.safetensors; parameter names are the reference's
state-dict keys, which are flow's (ARCHITECTURE.md).

Needs only the Python standard library: a torch `model.pt` is a zip holding a pickle whose
tensors point at raw little-endian storages, which this reads without torch. A measuring
tool, not part of the product or CI.
"""
import json
import pickle
import struct
import sys
import zipfile
from pathlib import Path

# torch storage class name -> (safetensors dtype, struct code, bytes per element)
STORAGES = {
    "FloatStorage": ("F32", "f", 4),
    "DoubleStorage": ("F64", "d", 8),
    "HalfStorage": ("F16", "e", 2),
    "LongStorage": ("I64", "q", 8),
}


class Tensor:
    """A tensor as the pickle describes it: a storage key, offset, shape and strides."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)


def _rebuild_tensor(storage, offset, shape, stride, *_ignored):
    return Tensor(storage, offset, shape, stride)


class StateDictUnpickler(pickle.Unpickler):
    """Resolves torch's persistent storages to (kind, key) and tensors to `Tensor`."""

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module == "torch" and name in STORAGES:
            return name
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a state dict")

    def persistent_load(self, pid):
        # ('storage', storage_kind, key, location, numel)
        _, kind, key, _location, _numel = pid
        return (kind, key)


def read_state_dict(path):
    """{name: (dtype, shape, little-endian bytes in C order)} of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as archive:
        root = archive.namelist()[0].split("/")[0]
        with archive.open(f"{root}/data.pkl") as f:
            state = StateDictUnpickler(f).load()
        out = {}
        for name, tensor in state.items():
            kind, key = tensor.storage
            dtype, code, size = STORAGES[kind]
            raw = archive.read(f"{root}/data/{key}")
            values = struct.unpack(f"<{len(raw) // size}{code}", raw)
            out[name] = (dtype, tensor.shape, _gather(values, tensor, code))
    return out


def _gather(values, tensor, code):
    """The tensor's elements in C order (a view may be strided into a larger storage)."""
    n = 1
    for d in tensor.shape:
        n *= d
    picked = []
    index = [0] * len(tensor.shape)
    for _ in range(n):
        picked.append(values[tensor.offset + sum(i * s for i, s in zip(index, tensor.stride))])
        for axis in reversed(range(len(index))):
            index[axis] += 1
            if index[axis] < tensor.shape[axis]:
                break
            index[axis] = 0
    return struct.pack(f"<{n}{code}", *picked)


def write_safetensors(tensors, path):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def manifest(config, preprocessor, source):
    """flow-model.json for the reference's published settings (its config.txt)."""
    n_features = len(preprocessor["columns"])
    target_dims = preprocessor["target_dims"] or list(range(n_features))
    assert config["lookback"] == preprocessor["window"], "the process run's window differs from the model's"
    return {
        "format_version": 1,
        "algorithm": "mtad_gat",
        "preprocessor": preprocessor,
        "model": {
            "n_features": n_features,
            "window": config["lookback"],
            "n_target": len(target_dims),
            "kernel_size": config["kernel_size"],
            "gat": "gatv2" if config["use_gatv2"] else "gat",
            "gru_hidden": config["gru_hid_dim"],
            "forecast_layers": config["fc_n_layers"],
            "forecast_hidden": config["fc_hid_dim"],
            "recon_hidden": config["recon_hid_dim"],
            "decoder_input": "interleaved",
            "dropout": config["dropout"],
            "alpha": config["alpha"],
            "mode": "both",
        },
        "gamma": config["gamma"],
        "thresholds": {"pot": None, "epsilon": None, "best_f1": None, "chosen": None},
        "trained": {
            "epochs": config["epochs"],
            "best_val_loss": 0.0,
            "seed": 0,
            "n_train_windows": 0,
            "train_run_id": source,
        },
    }


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    model_pt, config_txt, process_dir, out = map(Path, sys.argv[1:])
    config = json.loads(config_txt.read_text())
    preprocessor = json.loads((process_dir / "preprocessor.json").read_text())
    tensors = read_state_dict(model_pt)
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(tensors, out / "weights.safetensors")
    source = f"ml4its:{config['dataset']}:{model_pt.parent.name}"
    (out / "flow-model.json").write_text(json.dumps(manifest(config, preprocessor, source), indent=2) + "\n")
    print(f"wrote {out}: {len(tensors)} tensors from {model_pt}")


if __name__ == "__main__":
    main()
