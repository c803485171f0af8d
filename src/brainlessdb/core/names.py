"""Names on NATS: which namespaces and collection names are valid, and the bucket each one uses.

A collection ``call`` of namespace ``myapp`` lives in the KV bucket ``myapp-call``, with everything it
needs: its entities under their uuids, and its schema under the reserved key ``_schema`` (a key starting
with ``_`` is never a uuid). With locations, the bucket also holds each other location's keys as copies,
under ``_<peer>.<key>`` (see ``storage.nats.buckets``). The namespace's leases live in
``myapp--leases``; schemas used to live in ``myapp--schema``, which ``start()`` still reads to move them
(see ``shell.migration``). A bucket is the JetStream stream ``KV_<bucket>``, and NATS refuses stream
names over 255 characters.
"""

from __future__ import annotations

import re
from typing import Any, Final

from brainlessdb.errors import InvalidNameError

NAMESPACE_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]+")
COLLECTION_PATTERN: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
SCHEMA_SUFFIX: Final = "--schema"
SCHEMA_KEY: Final = "_schema"
"""The key of a collection's schema in the collection's own bucket."""
RESERVED_PREFIX: Final = "_"
"""Keys starting with it are the collection's own (its schema), never an entity's: no uuid starts so."""
LEASE_SUFFIX: Final = "--leases"
MAX_BUCKET_NAME: Final = 252  # 255 minus the stream's "KV_"
MAX_KEY: Final = 1024  # far below NATS' subject limits, and a name that long is a mistake
COLLECTION_RULE: Final = (
    "start with a letter, then use letters, digits and '_' only ('-' is refused: it separates the"
    " namespace from the collection in the bucket name '{namespace}-{collection}')"
)
"""What a collection name may be. Without ``-``, a bucket name tells its namespace and collection apart
(``a-b-c`` can only be namespace ``a-b``'s collection ``c``), and no collection's bucket can be taken for a
namespace's own (``myapp--leases``)."""
_KEY_CHARS: Final = frozenset("-/_.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def check_namespace(namespace: Any) -> str:
    """``namespace`` if it is a valid namespace, else ``InvalidNameError``."""
    if not isinstance(namespace, str) or not NAMESPACE_PATTERN.fullmatch(namespace):
        raise InvalidNameError("namespace", str(namespace))
    if len(schema_bucket(namespace)) > MAX_BUCKET_NAME:
        raise InvalidNameError("namespace", namespace, _too_long(schema_bucket(namespace)))
    return namespace


def is_collection_name(name: Any) -> bool:
    """True when ``name`` may name a collection (its bucket's length aside)."""
    return isinstance(name, str) and COLLECTION_PATTERN.fullmatch(name) is not None


def check_collection(namespace: str, name: Any) -> str:
    """``name`` if it is a valid collection name in ``namespace``, else ``InvalidNameError``."""
    if not is_collection_name(name):
        raise InvalidNameError("collection", str(name), COLLECTION_RULE)
    bucket = bucket_name(namespace, name)
    if len(bucket) > MAX_BUCKET_NAME:
        raise InvalidNameError("collection", name, _too_long(bucket))
    return str(name)


def _too_long(bucket: str) -> str:
    return f"its bucket name would be {len(bucket)} characters long, over NATS' {MAX_BUCKET_NAME}"


def bucket_name(namespace: str, collection: str) -> str:
    """The KV bucket of a collection: ``{namespace}-{collection}``."""
    return f"{namespace}-{collection}"


def copied_key(key: str) -> str | None:
    """The key that ``key`` copies from another location (``_<peer>.<key>``), else None."""
    if not key.startswith(RESERVED_PREFIX):
        return None
    peer, dot, copied = key[1:].partition(".")
    return copied if dot and peer and copied and "." not in copied else None


def collection_of_bucket(namespace: str, bucket: str) -> str | None:
    """The collection whose bucket is ``bucket`` in ``namespace``; None if it is none of its collections'."""
    prefix = f"{namespace}-"
    if not bucket.startswith(prefix):
        return None
    name = bucket[len(prefix) :]
    return name if is_collection_name(name) else None


def schema_bucket(namespace: str) -> str:
    """The KV bucket that held a namespace's schemas before they moved into each collection's own bucket:
    ``{namespace}--schema`` (read once by ``start()``, to move them)."""
    return namespace + SCHEMA_SUFFIX


def lease_bucket(namespace: str) -> str:
    """The KV bucket of a namespace's leases: ``{namespace}--leases``."""
    return namespace + LEASE_SUFFIX


def lease_key(name: Any) -> str:
    """The KV key of the lease ``name`` (any non-empty string): its characters that a key cannot hold,
    and ``=``, are written ``=XX`` per UTF-8 byte (``"dispatcher:queue-5"`` is ``dispatcher=3Aqueue-5``)."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError("lease", str(name), "a lease name is a non-empty string")
    key = "".join(char if char in _KEY_CHARS else _escape(char) for char in name)
    if key.startswith(".") or key.endswith(".") or ".." in key:
        key = key.replace(".", "=2E")  # a key's dots separate subject tokens, which may not be empty
    if len(key) > MAX_KEY:
        raise InvalidNameError("lease", name, f"its key would be {len(key)} characters, over {MAX_KEY}")
    return key


def _escape(char: str) -> str:
    return "".join(f"={byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
