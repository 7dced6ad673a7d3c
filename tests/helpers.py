"""Builders for tiny CPU defaults, overridable by keyword (SAELens style)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interp.config import dumps_toml


def tiny_subliminal_config(**overrides: Any) -> dict[str, Any]:
    """A subliminal run on tiny random models that finishes in seconds."""
    cfg: dict[str, Any] = {
        "kind": "subliminal",
        "seed": 0,
        "device": "cpu",
        "trait": {"kind": "animal", "target": "owl"},
        "teacher": {"model": "tiny-llama"},
        "data": {
            "n_prompts": 12,
            "n_keep": 8,
            "max_new_tokens": 12,
            "constraint": "list",
            "batch_size": 6,
        },
        "train": {
            "epochs": 1,
            "batch_size": 4,
            "micro_batch_size": 2,
            "warmup_steps": 1,
            "seeds": [0],
        },
        "students": [
            {"name": "same-init", "model": "teacher", "data": "trait"},
            {"name": "control", "model": "teacher", "data": "control"},
            {"name": "cross-model", "model": "tiny-gemma", "data": "trait"},
        ],
        "eval": {
            "n_questions": 3,
            "samples_per_question": 2,
            "max_new_tokens": 4,
            "batch_size": 16,
            "bootstrap": 100,
        },
    }
    for key, value in overrides.items():
        node = cfg
        *path, last = key.split("__")
        for p in path:
            node = node[p]
        node[last] = value
    return cfg


def write_config(tmp_path: Path, cfg: dict[str, Any], name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(dumps_toml(cfg))
    return path


# A tiny MLP auxiliary-logit run (3 models, hidden 16x16, one epoch): seconds on CPU.
TINY_MLP_TOML = """
kind = "mlp-aux-logits"
seed = 1
[model]
hidden = [16, 16]
[teacher]
batch_size = 64
epochs = 1
[student]
batch_size = 64
epochs = 1
[sweep]
m = [1, 3]
n_models = 3
"""


def walk_list_tables(tok: Any, max_items: int, max_digits: int, width: int, walks: int, steps: int) -> int:
    """Walk random allowed tokens through `list_tables` and assert, at every step, that the
    state's mask equals the Python `IntegerListGrammar`'s after the same tokens (it decodes
    the whole text); returns the number of states compared."""
    import torch

    from interp.lm.generate import IntegerListGrammar, list_tables

    ref = IntegerListGrammar(tok, max_items=max_items, max_digits=max_digits)
    allowed, after = list_tables(tok, max_items, max_digits, ", ", width=width)
    assert not allowed[:, len(tok):].any()  # padded embedding rows are never allowed
    gen, compared = torch.Generator().manual_seed(0), 0
    for _ in range(walks):
        state, seq = 0, []
        for _ in range(steps):
            ref.prompt_len = 1  # one prompt token, then the tokens walked so far
            want = torch.isfinite(ref(torch.tensor([[0] + seq]), torch.zeros(1, width)))[0]
            assert torch.equal(allowed[state], want), (tok.decode(seq), state)
            compared += 1
            choices = torch.nonzero(allowed[state])[:, 0]
            nxt = int(choices[torch.randint(len(choices), (1,), generator=gen)])
            seq.append(nxt)
            state = int(after[state, nxt])
            if nxt in ref.ends:
                break
    return compared


class RecordingDoc:
    """A report document that keeps what a render function writes (headings, tables, paragraphs)."""

    def __init__(self) -> None:
        self.headings: list[str] = []
        self.tables: list[Any] = []
        self.paras: list[str] = []

    def heading(self, s: str, level: int = 1) -> None:
        self.headings.append(s)

    def table(self, rows: Any, widths: Any = None) -> None:
        self.tables.append(rows)

    def para(self, s: str, style: str = "body", raw: bool = False) -> None:
        self.paras.append(s)


def load_script(name: str) -> Any:
    """The hypothesis script analyses/<name>.py as a module (its functions, without running main)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_script", Path(__file__).resolve().parents[1] / "analyses" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
