"""Queries: criteria parsed into plans (``plan``), lookups, filtering, ordering and indexes."""
