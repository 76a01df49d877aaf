"""Workspaces (tenants), their settings and sending policy, users (agents) and API keys."""
