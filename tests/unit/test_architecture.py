"""Layer rules the import graph must keep (docs/architecture.md, "Dependency rules")."""

from __future__ import annotations

import grimp

# The tenant handle is passed everywhere, and a background job's row is what the scheduler
# hands to each package's job handler; every other table stays inside its package.
SHARED_TABLES = {"tidings.workspaces.orm", "tidings.scheduler.orm"}
# Modules that gather tables or wire the entry points may look inside any package.
ALLOWED_IMPORTERS = {"tidings.db.metadata"}


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_package_reads_another_packages_tables_or_queries() -> None:
    graph = grimp.build_graph("tidings")
    offenders = []
    for module in sorted(graph.modules):
        if module.rsplit(".", 1)[-1] not in {"orm", "repository"} or module in SHARED_TABLES:
            continue
        for importer in graph.find_modules_that_directly_import(module):
            if _package(importer) != _package(module) and importer not in ALLOWED_IMPORTERS:
                offenders.append(f"{importer} → {module}")
    assert offenders == []
