"""The demo workspace that ``tidings serve --demo`` seeds: a small Asian shop with history."""
