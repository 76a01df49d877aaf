"""Storage: engine, sessions, base classes, column types and migrations.

Holds no domain tables; each domain package declares its own in ``orm.py``.
"""
