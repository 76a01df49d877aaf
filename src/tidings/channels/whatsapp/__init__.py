"""The WhatsApp Cloud API adapter: webhook verification and parsing (sending comes next)."""
