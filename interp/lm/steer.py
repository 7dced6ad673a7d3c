"""Interventions on the residual stream of an HF decoder model, as context managers.

`add_direction` adds `scale * vector` to the output of one block (`resid_post` of `layer`) at
every position; `project_out` removes the component along a direction from the output of one or
more blocks. Both are forward hooks on `model.model.layers[layer]` (the HF decoder layer), so a
hook on block `layer` changes HF `hidden_states[layer + 1]` and everything downstream.

Conventions:
- Hooks are registered with `prepend=True`, so they run before any other forward hook on the
  block. transformers installs its own output-capturing hooks on the decoder layers lazily (on
  the first `output_hidden_states=True` call); prepending makes `hidden_states` show the steered
  value whatever the order of set-up. The flip side: of two steering contexts on the same
  block, the one entered last runs first.
- Vectors are cast to the activation's dtype and device at call time (bf16 models work);
  projections are computed in float32 and cast back.
- Hooks are removed on exit, also when the body raises.
- Only the HF model sees these hooks: `record.bridge_for` / `record.nnsight_for` wrap
  structural copies, and `record.residual_stream` refuses those backends while hooks are active
  (`n_steering_hooks`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

# Active steering hooks per model, so recorders can tell when a model is being steered.
_ACTIVE: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()


def decoder_layers(model: Any) -> nn.ModuleList:
    """The list of decoder blocks (`model.model.layers` for Llama / Gemma-3 causal LMs)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    for owner in (decoder, getattr(model, "model", None)):
        layers = getattr(owner, "layers", None)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise TypeError(f"cannot find the decoder blocks of {type(model).__name__} (no .model.layers)")


def n_steering_hooks(model: Any) -> int:
    """How many steering hooks from this module are currently registered on `model`."""
    return _ACTIVE.get(model, 0)


def _split(output: Any) -> tuple[Tensor, tuple[Any, ...] | None]:
    """A decoder layer returns a tensor in transformers 5, a tuple (hidden, ...) in 4.x."""
    if isinstance(output, tuple):
        return output[0], output[1:]
    return output, None


def _join(hidden: Tensor, rest: tuple[Any, ...] | None) -> Any:
    return hidden if rest is None else (hidden, *rest)


@contextmanager
def _hooked(model: Any, fns: Mapping[int, Callable[[Tensor], Tensor]]) -> Iterator[None]:
    """Register `fns[layer]` as an output rewrite of block `layer`; remove all on exit."""
    layers = decoder_layers(model)
    n = len(layers)
    bad = [layer for layer in fns if not -n <= layer < n]
    if bad:
        raise IndexError(f"layer(s) {bad} out of range for a model with {n} blocks")

    def make_hook(fn: Callable[[Tensor], Tensor]) -> Callable[..., Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            hidden, rest = _split(output)
            return _join(fn(hidden), rest)

        return hook

    handles = []
    try:
        for layer, fn in fns.items():
            handles.append(layers[layer].register_forward_hook(make_hook(fn), prepend=True))
            _ACTIVE[model] = _ACTIVE.get(model, 0) + 1
        yield
    finally:
        for h in handles:
            h.remove()
            _ACTIVE[model] = _ACTIVE.get(model, 1) - 1
        if _ACTIVE.get(model, 0) <= 0:
            _ACTIVE.pop(model, None)


def _check_vector(vector: Tensor, d_model: int, what: str) -> Tensor:
    vector = torch.as_tensor(vector).detach()
    if vector.shape != (d_model,):
        raise ValueError(f"{what} must have shape [d_model={d_model}], got {tuple(vector.shape)}")
    if not torch.isfinite(vector).all():
        raise ValueError(f"{what} has non-finite entries")
    return vector


@contextmanager
def add_direction(
    model: Any, layer: int, vector: Float[Tensor, " d_model"], scale: float = 1.0
) -> Iterator[None]:
    """Add `scale * vector` to block `layer`'s output (resid_post) at every position."""
    v = _check_vector(vector, model.config.hidden_size, "steering vector").float() * float(scale)
    cache: dict[tuple[torch.dtype, torch.device], Tensor] = {}  # cast once per dtype/device

    def fn(hidden: Tensor) -> Tensor:
        key = (hidden.dtype, hidden.device)
        if key not in cache:
            cache[key] = v.to(device=hidden.device, dtype=hidden.dtype)
        return hidden + cache[key]

    with _hooked(model, {layer: fn}):
        yield


@contextmanager
def project_out(
    model: Any,
    layers: list[int] | int,
    direction: Float[Tensor, " d_model"] | Mapping[int, Float[Tensor, " d_model"]],
) -> Iterator[None]:
    """Remove the component along `direction` (normalised) from each listed block's output.

    `direction` is one vector for all layers or a `{layer: vector}` mapping covering them.
    """
    layer_list = [layers] if isinstance(layers, int) else list(layers)
    if not layer_list:
        raise ValueError("project_out needs at least one layer")
    d_model = model.config.hidden_size
    units: dict[int, Tensor] = {}
    for layer in layer_list:
        if isinstance(direction, Mapping):
            if layer not in direction:
                raise KeyError(f"no direction given for layer {layer}")
            raw = direction[layer]
        else:
            raw = direction
        u = _check_vector(raw, d_model, f"direction for layer {layer}").float()
        norm = u.norm()
        if norm == 0:
            raise ValueError(f"direction for layer {layer} is zero; nothing to project out")
        units[layer] = u / norm

    def make_fn(u: Tensor) -> Callable[[Tensor], Tensor]:
        def fn(hidden: Tensor) -> Tensor:
            # float32 keeps the residual component ~0 for bf16 models too (up to the final cast).
            h = hidden.float()
            uu = u.to(h.device)
            return (h - (h @ uu).unsqueeze(-1) * uu).to(hidden.dtype)

        return fn

    with _hooked(model, {layer: make_fn(u) for layer, u in units.items()}):
        yield
