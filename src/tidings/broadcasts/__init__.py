"""Broadcasts (P8): one template to an audience, scheduled, paced, obeying the sending policy."""
