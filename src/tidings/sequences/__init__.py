"""Sequences: durable, branching nurture flows (S1-S8)."""
