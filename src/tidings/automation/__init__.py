"""Automation: segments, rules, keywords and intents (A1-A7)."""
