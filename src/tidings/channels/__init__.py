"""Channels: the adapters that turn WhatsApp (and later e-mail) formats into our own types.

Nothing outside this package knows Graph JSON.
"""
