"""Optional dependencies: which pip extra installs each one, and one line when one is absent.

The core install (torch, transformers, peft, ...) runs every experiment end to end. The extras:
- `report`: reportlab, for PDFs (`interp report`, a config's `[report] enabled`, a sweep's PDF);
- `activations`: transformer-lens and nnsight, the non-HF recording backends (`[analysis] backend`);
- `analysis`: scikit-learn, for the detection classifier, the probes, the trait matrix's target
  probe, `interp scan --control` and the MLP experiment's digits.
`dev` installs all of them. A module that needs one imports it where it is used (or is imported
only from those code paths), so `import interp.cli` and `interp run` work without any extra; the
callers check with `missing` first and skip (a run's report, an analysis section) or stop with
one line (`interp report`).
"""

from __future__ import annotations

import importlib.util

# import name -> (distribution name, extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "reportlab": ("reportlab", "report"),
    "transformer_lens": ("transformer-lens", "activations"),
    "nnsight": ("nnsight", "activations"),
    "sklearn": ("scikit-learn", "analysis"),
}


class MissingExtra(RuntimeError):
    """A command needs an optional package that is not installed; str() is the one line to show."""


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # blocked, or a half-initialised module in sys.modules
        return False


def missing(*modules: str) -> str | None:
    """None when every module is importable, else one line naming the first absent one and its
    extra: "reportlab is not installed (pip install 'interp[report]')"."""
    for module in modules:
        if not installed(module):
            dist, extra = EXTRAS.get(module, (module, "dev"))
            return f"{dist} is not installed (pip install 'interp[{extra}]')"
    return None


def require(what: str, *modules: str) -> None:
    """Raise `MissingExtra` ("<package> is not installed (pip install ...); <what> needs it") when
    one of `modules` is absent."""
    why = missing(*modules)
    if why is not None:
        raise MissingExtra(f"{why}; {what} needs it")


def backend_module(backend: str) -> tuple[str, ...]:
    """The optional package an activation-recording backend needs ("hf": none)."""
    return (backend,) if backend in ("transformer_lens", "nnsight") else ()
