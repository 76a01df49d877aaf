"""The kernel: time, errors and small value types that every other package may use.

Nothing here performs I/O or imports another Tidings package.
"""
