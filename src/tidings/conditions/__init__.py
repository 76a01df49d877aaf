"""The condition language (see domain.py)."""
