"""The sync state of a collection, without I/O: what to write, what was written, what others wrote."""
