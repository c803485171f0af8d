"""How nats errors become ``StorageError``s, and how server URLs are shown without their credentials.

Every nats exception the storage meets is translated here, by type or by the JetStream API error code
(named below), never by its message, with one exception: the server reports a denied publish only as
text in an asynchronous ``-ERR``, so ``denied_subject`` reads the subject out of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

import nats.errors
import nats.js.errors

from brainlessdb.errors import ConflictError, PermissionDeniedError, StorageError, UnavailableError

# JetStream API error codes (nats-server errors.json) this module acts on.
ERR_WRONG_LAST_SEQUENCE: Final = 10071  # JSStreamWrongLastSequenceErr
ERR_WRONG_LAST_SEQUENCE_CONSTANT: Final = 10164  # JSStreamWrongLastSequenceConstantErr
ERR_STREAM_NAME_IN_USE: Final = 10058  # JSStreamNameExistErr: created concurrently with other settings
STATUS_UNAVAILABLE: Final = 503

CONFLICT_CODES: Final = frozenset({ERR_WRONG_LAST_SEQUENCE, ERR_WRONG_LAST_SEQUENCE_CONSTANT})

# Errors after which the same request may well succeed later: nobody answered in time, the client is
# between servers, or JetStream is electing a leader.
_RETRYABLE: Final = (
    asyncio.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.TooManyStalledMsgsError,
)

# A publish the account may not make is dropped by the server, which tells the client only in text:
# ``-ERR 'Permissions Violation for Publish to "<subject>"'``. nats-py raises nothing on the publish (a
# request just never gets its answer); it lowercases that text and hands it to the connection's error
# callback as a plain ``nats.errors.Error("nats: permissions violation for publish to \"<subject>\"")``. No
# code or type tells these apart, so ``denied_subject`` reads the text, here and nowhere else, and the
# storage fails the write or request waiting on that subject at once instead of letting it time out.
# (A denied subscription is reported the same way; it is only logged: its replies never come, and what
# waits on them times out as unavailable.)
PUBLISH_DENIED: Final = "nats: permissions violation for publish to "


def denied_subject(exc: BaseException) -> str | None:
    """The subject of a publish the server denied, if ``exc`` reports one (lowercased, as nats-py has it)."""
    if type(exc) is not nats.errors.Error or not exc.args or not isinstance(exc.args[0], str):
        return None
    text: str = exc.args[0]
    if not text.startswith(PUBLISH_DENIED):
        return None
    quoted = text[len(PUBLISH_DENIED) :]
    if not quoted.startswith('"') or '"' not in quoted[1:]:
        return None
    return quoted[1:].split('"', 1)[0]


def api_bucket_of(subject: str) -> str | None:
    """The bucket a (lowercased) JetStream API subject is about, from its ``kv_<bucket>`` token."""
    for token in subject.split("."):
        if token.startswith("kv_") and len(token) > 3:
            return token[3:]
    return None


def redact_url(url: str) -> str:
    """``url`` without its user, password or token: ``nats://***@host:4222``."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    return f"{scheme}{separator}***@{rest.rpartition('@')[2]}"


def redact_servers(servers: str | Sequence[str]) -> str:
    """The server URL(s) for a message, each without credentials."""
    if isinstance(servers, str):
        return redact_url(servers)
    return ", ".join(redact_url(url) for url in servers)


def translate_error(exc: BaseException, key: str | None = None, expected: int | None = None) -> StorageError:
    """The ``StorageError`` that stands for a nats exception (with the original as its cause)."""
    error: StorageError
    if isinstance(exc, nats.js.errors.APIError) and exc.err_code in CONFLICT_CODES and key is not None:
        error = ConflictError(key, expected)
    elif isinstance(exc, nats.errors.AuthorizationError):
        error = PermissionDeniedError(f"NATS refused the credentials: {exc!r}")
    elif isinstance(exc, _RETRYABLE) or (
        isinstance(exc, nats.js.errors.APIError) and exc.code == STATUS_UNAVAILABLE
    ):
        error = UnavailableError(f"NATS unavailable: {exc!r}")
    else:
        error = StorageError(f"NATS failed: {exc!r}")
    error.__cause__ = exc
    return error
