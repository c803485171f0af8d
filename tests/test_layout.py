"""The import graph of the package: no module imports another in a cycle, type-only imports included."""

from __future__ import annotations

import grimp


def test_no_module_imports_another_in_a_cycle() -> None:
    graph = grimp.build_graph("brainlessdb")  # imports under ``if TYPE_CHECKING:`` are in the graph too
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported == "brainlessdb" or module == "brainlessdb":
                continue  # the package facade imports everything it exports; no module imports it
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain is not None:
                cycles.append(" -> ".join((module, *chain)))
    assert cycles == []


def test_no_module_imports_the_package_facade() -> None:
    graph = grimp.build_graph("brainlessdb")
    importers = graph.find_modules_that_directly_import("brainlessdb")
    assert importers == set()
