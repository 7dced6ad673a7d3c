"""Interventions on the residual stream of an HF decoder model, as context managers.

`add_direction` adds `scale * vector` to the output of one block (`resid_post` of `layer`) at
every position; `project_out` removes the component along a direction from the output of one or
more blocks; `ablate_shift` removes only the component of a student's *shift* (student minus
base, same input and position) along a direction, leaving the base's own activation. All are
forward hooks on `model.model.layers[layer]` (the HF decoder layer), so a hook on block `layer`
changes HF `hidden_states[layer + 1]` and everything downstream.

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

import inspect
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


def _units(
    model: Any, layers: list[int], direction: Tensor | Mapping[int, Tensor]
) -> dict[int, Tensor]:
    """`{layer: unit float32 vector}` from one vector or a mapping covering `layers`."""
    d_model = model.config.hidden_size
    units: dict[int, Tensor] = {}
    for layer in layers:
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
    return units


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
    units = _units(model, layer_list, direction)

    def make_fn(u: Tensor) -> Callable[[Tensor], Tensor]:
        def fn(hidden: Tensor) -> Tensor:
            # float32 keeps the residual component ~0 for bf16 models too (up to the final cast).
            h = hidden.float()
            uu = u.to(h.device)
            return (h - (h @ uu).unsqueeze(-1) * uu).to(hidden.dtype)

        return fn

    with _hooked(model, {layer: make_fn(u) for layer, u in units.items()}):
        yield


def remove_shift(
    student: Float[Tensor, "... d_model"],
    base: Float[Tensor, "... d_model"],
    unit: Float[Tensor, " d_model"],
) -> Float[Tensor, "... d_model"]:
    """`student - ((student - base) . unit) unit`: the student without its shift's `unit` component.

    `unit` must have norm 1. Computed in float32 (the removed component stays ~0 for bf16 models
    up to the final cast), returned in `student`'s dtype. The base itself is a fixed point.
    """
    h, u = student.float(), unit.to(device=student.device, dtype=torch.float32)
    coef = (h - base.to(device=student.device, dtype=torch.float32)) @ u
    return (h - coef.unsqueeze(-1) * u).to(student.dtype)


# Set on a KV cache that carries the base's layers after the student's own.
_PAIRED = "_interp_shift_base_layers"


def _decoder(model: Any) -> nn.Module:
    """The module that takes input_ids and runs the blocks (`model.model` of a causal LM)."""
    has = hasattr(model, "get_decoder")
    decoder = model.get_decoder() if has else getattr(model, "model", None)
    if not isinstance(decoder, nn.Module):
        raise TypeError(f"cannot find the decoder of {type(model).__name__}")
    return decoder


def _base_half(cache: Any, n: int, base_config: Any) -> Any:
    """A cache over the base's layers of `cache`, adding them to it (after the student's n) if new.

    Keeping both halves in one cache object means whatever a caller does to it between forwards
    (deepcopy, `batch_repeat_interleave`, `crop`, `reorder_cache`) happens to the base's past too.
    """
    from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

    if type(cache) is not DynamicCache:
        raise ValueError(f"ablate_shift supports a DynamicCache only, got {type(cache).__name__}")
    if getattr(cache, _PAIRED, None) != n:
        if any(getattr(layer, "is_initialized", False) for layer in cache.layers):
            raise ValueError(
                "ablate_shift: this KV cache was filled outside the context, so the base has no "
                "past for it; build the cache inside the context"
            )
        while cache.layer_class_to_replicate is not None and len(cache.layers) < n:
            cache.layers.append(cache.layer_class_to_replicate())
        if len(cache.layers) != n:
            raise ValueError(f"ablate_shift: a KV cache of {len(cache.layers)} layers, {n} blocks")
        fresh = DynamicCache(config=base_config).layers or [DynamicLayer() for _ in range(n)]
        cache.layers.extend(fresh)
        setattr(cache, _PAIRED, n)
    halves = cache.layers[0].get_seq_length(), cache.layers[n].get_seq_length()
    if len(cache.layers) != 2 * n or halves[0] != halves[1]:
        raise ValueError("ablate_shift: the KV cache's student and base halves do not match")
    view = DynamicCache.__new__(DynamicCache)
    # the same layer objects: the base's run writes into `cache`
    Cache.__init__(view, layers=cache.layers[n:])
    return view


class _ShiftAblation:
    """The hooks of one `ablate_shift` context: the base's run before each student forward, and
    the removal at each block."""

    def __init__(self, student: Any, base: Any, units: dict[int, Tensor]):
        self.s_dec, self.b_dec = _decoder(student), _decoder(base)
        self.b_layers, self.n = decoder_layers(base), len(decoder_layers(student))
        self.units = units
        params = inspect.signature(self.s_dec.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"  # transformers 5 / 4
        # during a student forward: the base's block outputs, and its cache layers (kept aside)
        self.base_out: dict[int, Tensor] | None = None
        self.hidden: tuple[Any, list[Any]] | None = None

    def pre(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        """Run the base on the student's inputs and past; hand the student its inputs by keyword."""
        if self.base_out is not None:
            raise RuntimeError("ablate_shift: a student forward inside a student forward")
        if len(args) > 1:
            raise ValueError("ablate_shift: pass inputs by keyword (input_ids may be positional)")
        kw = dict(kwargs, **({"input_ids": args[0]} if args else {}))
        if kw.get("inputs_embeds") is not None:
            raise ValueError("ablate_shift needs input_ids: inputs_embeds have no base equivalent")
        given = [kw.pop(name) for name in ("cache", "past_key_values") if name in kw]
        cache = next((c for c in given if c is not None), None)
        use_cache = kw.get("use_cache")
        if use_cache is None:
            use_cache = getattr(self.s_dec.config, "use_cache", False)
        if cache is None and use_cache:
            from transformers.cache_utils import DynamicCache

            # what the decoder would make itself, made here so that the base's half joins it
            cache = DynamicCache(config=self.s_dec.config)
        captured: dict[int, Tensor] = {}
        base_cache = None if cache is None else _base_half(cache, self.n, self.b_dec.config)
        self._run_base(kw, base_cache, captured)
        if cache is not None:  # the student sees its own layers only (masks read the layer types)
            self.hidden = (cache, cache.layers[self.n :])
            del cache.layers[self.n :]
        self.base_out = captured
        return (), {**kw, self.cache_arg: cache}

    def _run_base(self, kw: dict[str, Any], cache: Any, into: dict[int, Tensor]) -> None:
        def capture(layer: int) -> Callable[..., None]:
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                into[layer] = _split(output)[0].detach()

            return hook

        handles = [self.b_layers[i].register_forward_hook(capture(i)) for i in self.units]
        quiet = {"output_hidden_states": False, "output_attentions": False}
        try:
            with torch.no_grad():
                self.b_dec(**{**kw, self.cache_arg: cache, **quiet})
        finally:
            for h in handles:
                h.remove()

    def restore(self, *_: Any) -> None:
        """After each student forward (also one that raised): drop the base's run, rejoin caches."""
        self.base_out = None
        if self.hidden is not None:
            cache, layers = self.hidden
            cache.layers.extend(layers)
            self.hidden = None

    def block(self, layer: int) -> Callable[[Tensor], Tensor]:
        u = self.units[layer]

        def fn(hidden: Tensor) -> Tensor:
            if self.base_out is None:
                raise RuntimeError(f"ablate_shift: block {layer} ran outside the decoder's forward")
            ref = self.base_out[layer]
            if ref.shape != hidden.shape:
                raise RuntimeError(
                    f"ablate_shift: base output {tuple(ref.shape)}, student {tuple(hidden.shape)}"
                )
            return remove_shift(hidden, ref, u)

        return fn


@contextmanager
def ablate_shift(
    student: Any, base: Any, directions: Mapping[int, Float[Tensor, " d_model"]]
) -> Iterator[None]:
    """Remove the student's shift from `base` along `directions[l]` (normalised) at block l.

    At each listed block, `h_student <- h_student - ((h_student - h_base) . v_l) v_l`, where
    h_base is the base's block output on the same batch (same tokens, padding, positions and
    past), from a run of the base that a pre-forward hook on the student's decoder makes just
    before each student forward. The reference is the base's own unablated run: removing the
    shift at block l changes the student's input to later blocks but not the base's, so with
    several layers each removes the shift from the reference the student is compared with when
    both are recorded. The base gets no hook outside those runs and its outputs do not change.

    Works for every forward of the student's decoder: plain forwards, `generate`, the cached
    scoring and sampling loops. With a KV cache, the base's past lives in the same `DynamicCache`
    object, after the student's layers (hidden from the student during its forward), so copies,
    repeats and crops of the cache carry both. Refused (ValueError): the same model as student
    and base, different block counts or widths, a base already steered, `inputs_embeds`
    instead of input_ids, a cache that is not a `DynamicCache`, and a cache filled outside the
    context (the base would have no past for it). Costs one base forward per student forward.
    """
    if student is base:
        raise ValueError("ablate_shift needs two models, the student and its base; got one twice")
    n, n_base = len(decoder_layers(student)), len(decoder_layers(base))
    d, d_base = student.config.hidden_size, base.config.hidden_size
    if (n, d) != (n_base, d_base):
        raise ValueError(f"student ({n} blocks, d_model {d}) and base ({n_base}, {d_base}) differ")
    if n_steering_hooks(base):
        raise ValueError("the base is being steered: its run would not be the base's own")
    if not directions:
        raise ValueError("ablate_shift needs at least one layer")
    bad = [layer for layer in directions if not -n <= layer < n]
    if bad:
        raise IndexError(f"layer(s) {bad} out of range for a model with {n} blocks")
    units = {layer % n: u for layer, u in _units(student, list(directions), directions).items()}
    if len(units) != len(directions):
        raise ValueError(f"layers {sorted(directions)} name the same block twice")
    ab = _ShiftAblation(student, base, units)
    handles = []
    try:
        handles.append(ab.s_dec.register_forward_pre_hook(ab.pre, with_kwargs=True, prepend=True))
        handles.append(ab.s_dec.register_forward_hook(ab.restore, always_call=True))
        with _hooked(student, {layer: ab.block(layer) for layer in units}):
            yield
    finally:
        for h in handles:
            h.remove()
        ab.restore()
