"""Tidings: self-hosted social CRM and marketing automation, WhatsApp first."""

__version__ = "0.1.0"
