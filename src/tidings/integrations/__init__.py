"""Adapters to systems outside Tidings that are not messaging channels (outgoing webhooks …)."""
