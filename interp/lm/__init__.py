"""Language models: loading (embedded, Hub, tiny), finetuning (LoRA/full, hard/soft labels), deltas."""
