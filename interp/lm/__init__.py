"""Language models: `models` (loading embedded, Hub and tiny models; variants with a system
prompt, a delta or a steering hook), `generate` (sampling and constrained decoding), `finetune`
(LoRA/full, hard/soft labels), `delta` (LoRA factors and dense deltas), `align` (cross-tokenizer
character alignment), `record` (residual-stream recording), `steer` (hooks)."""
