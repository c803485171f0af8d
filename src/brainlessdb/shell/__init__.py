"""The I/O shell: the database's lifecycle and the background tasks that drive the core through storage."""
