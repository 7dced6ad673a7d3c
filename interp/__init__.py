"""interp: mechanistic study of subliminal learning (teacher -> data -> student)."""

__version__ = "0.1.0"
