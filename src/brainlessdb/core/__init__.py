"""The pure core: entities and their table, tracked containers, typed views, schemas, queries, the codec,
the clock, the merge rules and the sync state. Nothing here does I/O or imports asyncio: the shell drives
it and does the waiting (an import-linter contract in ``pyproject.toml`` keeps it so)."""
