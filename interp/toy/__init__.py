"""Toy experiments: small, fast, fully controlled demonstrations (MLP subliminal learning)."""
