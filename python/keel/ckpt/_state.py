"""Nested training state <-> (flat tensors, structure JSON), without pickle.

A state is tensors anywhere inside dicts (str or int keys), lists and tuples of plain values:
int, float, str, bool, None. The structure is JSON (loading it cannot run code); tensors are
named by their key path ("model/fc.weight", "optim/state/0/exp_avg"). Anything else is
rejected with an error naming its key path.
"""

import json

import torch

_DTYPES = {
    torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
    torch.bfloat16: "bfloat16", torch.int8: "int8", torch.int16: "int16",
    torch.int32: "int32", torch.int64: "int64", torch.uint8: "uint8", torch.bool: "bool",
}
_BY_NAME = {v: k for k, v in _DTYPES.items()}


def _path_text(path):
    return "state" + "".join(f"[{p!r}]" for p in path)


def flatten(state):
    """Returns (structure_json, [(name, tensor, dtype_name)])."""
    tensors = []
    names = set()

    def enc(value, path):
        if isinstance(value, torch.Tensor):
            if value.dtype not in _DTYPES:
                raise TypeError(f"{_path_text(path)}: tensors of dtype {value.dtype} are not "
                                f"supported (use one of {', '.join(_DTYPES.values())})")
            name = "/".join(str(p) for p in path) or "tensor"
            while name in names:  # e.g. keys "a/b" and ["a"]["b"]
                name += "_"
            names.add(name)
            tensors.append((name, value, _DTYPES[value.dtype]))
            return {"T": name}
        if value is None:
            return {"N": 0}
        if isinstance(value, bool):
            return {"B": value}
        if isinstance(value, int):
            return {"I": value}
        if isinstance(value, float):
            return {"F": repr(value)}  # repr round-trips exactly, nan and inf included
        if isinstance(value, str):
            return {"S": value}
        if isinstance(value, dict):
            items = []
            for k, v in value.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"{_path_text(path)}: dict key {k!r} of type "
                                    f"{type(k).__name__} is not supported (str or int keys)")
                items.append([k, enc(v, path + (k,))])
            return {"D": items}
        if isinstance(value, list):
            return {"L": [enc(v, path + (i,)) for i, v in enumerate(value)]}
        if isinstance(value, tuple):
            return {"U": [enc(v, path + (i,)) for i, v in enumerate(value)]}
        raise TypeError(f"{_path_text(path)}: values of type {type(value).__module__}."
                        f"{type(value).__qualname__} cannot be checkpointed (tensors, dicts, "
                        f"lists, tuples, int, float, str, bool and None can; no pickle)")

    structure = enc(state, ())
    return json.dumps(structure, allow_nan=False), tensors


def unflatten(structure_json, tensors):
    """Inverse of flatten; `tensors` maps names to tensors."""

    def dec(node):
        (tag, value), = node.items()
        if tag == "T":
            return tensors[value]
        if tag == "N":
            return None
        if tag in ("B", "I", "S"):
            return value
        if tag == "F":
            return float(value)
        if tag == "D":
            return {k: dec(v) for k, v in value}
        if tag == "L":
            return [dec(v) for v in value]
        if tag == "U":
            return tuple(dec(v) for v in value)
        raise ValueError(f"unknown structure tag {tag!r} in checkpoint")

    return dec(json.loads(structure_json))


def dtype_named(name):
    return _BY_NAME[name]


