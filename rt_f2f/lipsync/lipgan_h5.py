"""LipGAN's Keras ``.h5`` weight files: strict loading into :mod:`rt_f2f.lipsync.lipgan`, and writing them back.

Keras 2 stores weights per layer: a group per layer name (listed in the ``layer_names`` attribute, at the file root
for ``save_weights`` or under ``model_weights`` for ``model.save``), each with a ``weight_names`` attribute such as
``conv2d_7/kernel:0`` and one dataset per weight at that path inside the group. Layers are named by class and a
per-session creation counter (``conv2d_1``, ``conv2d_2``...; ``tf.keras`` names the first ``conv2d``), so the
counter order per class is the order the Keras code created the layers; :class:`~rt_f2f.lipsync.lipgan.LipGAN`
registers its layers in that same order. Every layer of the file is mapped by its name to exactly one torch layer:
per class, counts must match and every weight must have the expected name and shape, or a ``ModelFormatError``
says what the file is instead (the discriminator, the basic generator, a Wav2Lip ``.pth``...).

Layouts: Keras ``Conv2D`` kernels are (kh, kw, in, out), ``Conv2DTranspose`` (kh, kw, out, in); torch wants
(out, in, kh, kw) and (in, out, kh, kw), so both are ``transpose(3, 2, 0, 1)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..errors import ModelFormatError, ModelMissingError
from .lipgan import LipGAN, LipGANDiscriminator

if TYPE_CHECKING:
    import h5py

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
MAX_LAYERS = 4096  # the released generator has ~300 layers: anything far beyond is not a LipGAN file
KERAS_VERSION = "2.2.4"  # what the original requirements pin

KINDS: dict[str, str] = {
    "lipgan": "the LipGAN generator (residual, the released lipgan.h5)",
    "lipgan_basic": "the basic LipGAN generator (create_model)",
    "lipgan_disc": "the LipGAN discriminator (disc.h5)",
}

# Keras weight names per layer class, in Keras's order, and how each maps onto the torch module
_WEIGHTS: dict[str, tuple[tuple[str, str], ...]] = {
    "conv2d": (("kernel", "weight"), ("bias", "bias")),
    "conv2d_transpose": (("kernel", "weight"), ("bias", "bias")),
    "batch_normalization": (
        ("gamma", "weight"),
        ("beta", "bias"),
        ("moving_mean", "running_mean"),
        ("moving_variance", "running_var"),
    ),
    "instance_normalization": (("gamma", "weight"), ("beta", "bias")),
}
_NAME = re.compile(r"^(conv2d_transpose|conv2d|batch_normalization|instance_normalization)(?:_(\d+))?$")


def build(kind: str) -> nn.Module:
    """A fresh network of ``kind`` (one of ``KINDS``)."""
    if kind == "lipgan":
        return LipGAN(residual=True)
    if kind == "lipgan_basic":
        return LipGAN(residual=False)
    if kind == "lipgan_disc":
        return LipGANDiscriminator()
    raise ValueError(f"unknown LipGAN network {kind!r}; expected one of {sorted(KINDS)}")


def _to_keras(module: nn.Module, torch_name: str) -> np.ndarray:
    value = getattr(module, torch_name).detach().cpu().numpy()
    return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value


def _keras_shape(module: nn.Module, torch_name: str) -> tuple[int, ...]:
    shape = tuple(getattr(module, torch_name).shape)
    return (shape[2], shape[3], shape[1], shape[0]) if len(shape) == 4 else shape


@dataclass(frozen=True)
class KerasLayer:
    """One weight-bearing layer as a file holds it."""

    name: str
    keras_class: str
    number: int
    weights: dict[str, h5py.Dataset]  # short weight name ("kernel") -> dataset (read lazily)


def is_hdf5(path: str | Path) -> bool:
    """Whether the file starts with the HDF5 signature (how a LipGAN ``.h5`` is told from a Wav2Lip ``.pth``)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(HDF5_MAGIC)) == HDF5_MAGIC
    except OSError:
        return False


def _not_hdf5_error(path: Path) -> ModelFormatError:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return ModelFormatError(
            f"{path} is a torch checkpoint (e.g. Wav2Lip's .pth), not LipGAN's Keras .h5",
            "pass it with --model wav2lip, or give --model lipgan the released lipgan .h5 file",
        )
    return ModelFormatError(f"{path} is not an HDF5 file", "give the released LipGAN Keras weights (.h5)")


def _layers(root: h5py.File, path: Path) -> Iterator[KerasLayer]:
    import h5py

    group = root["model_weights"] if "model_weights" in root else root
    names = group.attrs.get("layer_names")
    if names is None:
        raise ModelFormatError(
            f"{path} is HDF5 but holds no Keras weights (no 'layer_names' attribute)",
            "give a file written by Keras model.save or save_weights",
        )
    if len(names) > MAX_LAYERS:
        raise ModelFormatError(f"{path} lists {len(names)} layers, far more than any LipGAN network")
    for raw in names:
        name = raw.decode("utf8") if isinstance(raw, bytes) else str(raw)
        if name not in group or not isinstance(group[name], h5py.Group):
            raise ModelFormatError(f"{path} lists layer {name!r} but has no group for it", "the file is damaged")
        layer = group[name]
        weight_names = [
            w.decode("utf8") if isinstance(w, bytes) else str(w) for w in layer.attrs.get("weight_names", [])
        ]
        if not weight_names:
            continue  # Input, Activation, Add, Concatenate, Lambda, Flatten: nothing to load
        match = _NAME.match(name)
        if match is None:
            raise ModelFormatError(
                f"{path} has a layer {name!r} with weights that no LipGAN network has",
                "the file is another Keras model: give the released LipGAN weights",
            )
        weights = {}
        for w in weight_names:
            short = w.rsplit("/", 1)[-1].split(":", 1)[0]
            if w not in layer or not isinstance(layer[w], h5py.Dataset):
                raise ModelFormatError(f"{path}: layer {name} lists weight {w!r} but has no dataset for it")
            weights[short] = layer[w]
        yield KerasLayer(name, match.group(1), int(match.group(2) or 0), weights)


def _expected(kind: str) -> dict[str, list[tuple[str, ...]]]:
    """Per Keras class, the short weight names of each layer in creation order (for telling files apart)."""
    with torch.device("meta"):
        model = build(kind)
    out: dict[str, list[tuple[str, ...]]] = {}
    for m in model.keras_layers():
        out.setdefault(m.keras_class, []).append(tuple(k for k, _ in _WEIGHTS[m.keras_class]))
    return out


def _counts(layers: list[KerasLayer]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for layer in layers:
        counts[layer.keras_class] = counts.get(layer.keras_class, 0) + 1
    return counts


def _open(path: str | Path) -> h5py.File:
    """The HDF5 file at ``path`` open for reading, or the error a user can act on."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise ModelMissingError(
            f"LipGAN weights not found: {p}",
            "download the released LipGAN weights (.h5, linked from the Rudrabha/LipGAN README) and pass the path",
        )
    if not is_hdf5(p):
        raise _not_hdf5_error(p)
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise ModelFormatError(
            f"{p} is not a readable HDF5 file ({exc})", "the file may be truncated: get it again"
        ) from exc


def identify(path: str | Path) -> str | None:
    """Which LipGAN network a ``.h5`` holds (by its layer classes and counts), or None."""
    with _open(path) as f:
        counts = _counts(list(_layers(f, Path(path))))
    for kind in KINDS:
        if counts == {k: len(v) for k, v in _expected(kind).items()}:
            return kind
    return None


def load_lipgan_network(path: str | Path, kind: str = "lipgan", device: str | torch.device = "cpu") -> nn.Module:
    """Network ``kind`` with every weight from the Keras file at ``path``, strictly; eval mode on ``device``."""
    p = Path(path)
    f = _open(p)
    model = build(kind)
    wanted: dict[str, list[nn.Module]] = {}
    for m in model.keras_layers():
        wanted.setdefault(m.keras_class, []).append(m)
    with f:
        layers = list(_layers(f, p))
        counts = _counts(layers)
        expected_counts = {k: len(v) for k, v in wanted.items()}
        if counts != expected_counts:
            other = next(
                (k for k in KINDS if k != kind and counts == {c: len(v) for c, v in _expected(k).items()}), None
            )
            if other:
                raise ModelFormatError(
                    f"{p} is {KINDS[other]}, not {KINDS[kind]}", "give the lip-sync engine the generator's weights"
                )
            found = ", ".join(f"{n} {c}" for c, n in sorted(counts.items())) or "none"
            need = ", ".join(f"{n} {c}" for c, n in sorted(expected_counts.items()))
            raise ModelFormatError(
                f"{p} does not match {KINDS[kind]}: it has layers {found}; expected {need}",
                "the file is another Keras model or a modified architecture: use the released LipGAN weights",
            )
        state: dict[str, torch.Tensor] = {}
        names = {id(m): n for n, m in model.named_modules()}
        for keras_class, modules in wanted.items():
            in_file = sorted((x for x in layers if x.keras_class == keras_class), key=lambda x: x.number)
            for layer, module in zip(in_file, modules, strict=True):
                for keras_name, torch_name in _WEIGHTS[keras_class]:
                    data = layer.weights.get(keras_name)
                    shape = _keras_shape(module, torch_name)
                    if data is None:
                        raise ModelFormatError(f"{p}: layer {layer.name} has no {keras_name!r} weight")
                    if tuple(data.shape) != shape:
                        raise ModelFormatError(
                            f"{p}: layer {layer.name} {keras_name} has shape {tuple(data.shape)}, expected {shape} "
                            f"for {KINDS[kind]}",
                            "the file is a different variant of the network: use the released LipGAN weights",
                        )
                    value = np.asarray(data[()], dtype=np.float32)
                    if value.ndim == 4:
                        value = value.transpose(3, 2, 0, 1)
                    state[f"{names[id(module)]}.{torch_name}"] = torch.from_numpy(np.ascontiguousarray(value))
                extra = set(layer.weights) - {k for k, _ in _WEIGHTS[keras_class]}
                if extra:
                    raise ModelFormatError(f"{p}: layer {layer.name} has unexpected weights {sorted(extra)}")
    # batch norms' num_batches_tracked are torch bookkeeping with no Keras counterpart
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def write_keras_h5(model: nn.Module, path: str | Path, full_model: bool = False) -> Path:
    """Write ``model``'s weights as Keras 2 does: ``save_weights`` layout, or ``model.save``'s when ``full_model``.

    Layers are numbered per class from 1 in creation order, the Input layers and the weightless layers around
    them are listed as Keras lists them (empty ``weight_names``). Files written here load in the original Keras
    code by topology and here by name; training (``rt-f2f train lipgan``) saves its networks with it.
    """
    import h5py

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    counters: dict[str, int] = {}
    tmp = out.with_name(out.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        if full_model:
            f.attrs["keras_version"] = KERAS_VERSION.encode()
            f.attrs["backend"] = b"tensorflow"
            group = f.create_group("model_weights")
        else:
            group = f
        is_disc = isinstance(model, LipGANDiscriminator)
        layer_names = [b"input_face_disc" if is_disc else b"input_face", b"input_audio"]
        for name in layer_names:
            group.create_group(name.decode()).attrs["weight_names"] = np.array([], dtype="S1")
        for module in model.keras_layers():
            cls = module.keras_class
            counters[cls] = counters.get(cls, 0) + 1
            name = f"{cls}_{counters[cls]}"
            layer = group.create_group(name)
            weight_names = [f"{name}/{k}:0" for k, _ in _WEIGHTS[cls]]
            layer.attrs["weight_names"] = np.array([w.encode() for w in weight_names])
            for w, (_, torch_name) in zip(weight_names, _WEIGHTS[cls], strict=True):
                layer.create_dataset(w, data=_to_keras(module, torch_name).astype(np.float32))
            layer_names.append(name.encode())
        if not is_disc:
            group.create_group("prediction").attrs["weight_names"] = np.array([], dtype="S1")
            layer_names.append(b"prediction")
        group.attrs["layer_names"] = np.array(layer_names)
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = KERAS_VERSION.encode()
    tmp.replace(out)
    return out
