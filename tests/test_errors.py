"""Every error is a ``BrainlessError`` and also the builtin it resembles."""

from __future__ import annotations

import brainlessdb
import brainlessdb.embedded
from brainlessdb.errors import (
    BrainlessError,
    ConflictError,
    FlushError,
    PermissionDeniedError,
    ServerError,
    StorageError,
    UnavailableError,
)


def test_storage_failures_are_os_errors_and_an_outage_a_connection_error() -> None:
    for error in (StorageError, ConflictError, UnavailableError, PermissionDeniedError, FlushError):
        assert issubclass(error, BrainlessError)
        assert issubclass(error, OSError)
    assert issubclass(UnavailableError, ConnectionError)
    assert not issubclass(UnavailableError, TimeoutError)  # stop()'s wait_for must not mistake it
    assert issubclass(PermissionDeniedError, PermissionError)


def test_storage_errors_keep_their_message_and_attributes() -> None:
    conflict = ConflictError("k1", 3)
    assert str(conflict) == "revision conflict on 'k1': expected 3"
    assert (conflict.key, conflict.expected) == ("k1", 3)
    assert conflict.errno is None
    flush = FlushError("1 change(s) could not be written", {"call/k1": conflict})
    assert (str(flush), flush.errors) == ("1 change(s) could not be written", {"call/k1": conflict})


def test_server_error_lives_with_the_others_and_is_still_importable_from_embedded() -> None:
    assert issubclass(ServerError, BrainlessError)
    assert issubclass(ServerError, RuntimeError)
    assert brainlessdb.embedded.ServerError is ServerError
    assert brainlessdb.ServerError is ServerError
    assert "ServerError" in brainlessdb.__all__
