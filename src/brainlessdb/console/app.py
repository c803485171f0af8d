"""The console's HTTP side: the page, the JSON endpoints behind it, and the stream of changes.

- ``GET /``: the page (``static/index.html``, with ``console.js`` and ``console.css`` beside it);
- ``GET /api/info``: namespace, servers (credentials hidden), and whether the nodes are listed;
- ``GET /api/collections``: each collection's entities, dead letters, bucket size and fields;
- ``GET /api/collections/{name}/entities?where=FIELD=VALUE&order_by=KEY&limit=N``: ``find``, each
  criterion a ``where`` (``where=state=waiting&where=priority__lt=3``);
- ``GET /api/collections/{name}/entities/{uuid}``: one entity, each field with its time and origin node;
- ``GET /api/collections/{name}/dead-letters``: stored values no node can use, and why;
- ``GET /api/nodes``: the running nodes (404 when the database does not list them);
- ``GET /api/events``: Server-Sent Events, every change and delete as ``watch --json`` prints them.

Every request passes the same checks: a ``Host`` that names this machine (unless remote access was
allowed), so that a web site cannot reach the console through a name it points at 127.0.0.1; and for
``/api/``, the token when one is set, as ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (the page's
stream of events cannot send headers). Only GET and HEAD are routed: nothing can be written through it.
Errors are JSON, ``{"error": "..."}``: 400 for bad criteria or a bad limit, 404 for an unknown
collection or entity, 401 for a missing or wrong token, 502 or 503 when NATS fails.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Final

from aiohttp import web

from brainlessdb.cli.common import NOT_FOUND, USAGE, CliError, dumps
from brainlessdb.console.events import EventHub
from brainlessdb.console.reader import Reader, parse_limit
from brainlessdb.errors import QueryError, StorageError, UnavailableError

logger = logging.getLogger(__name__)

KEEPALIVE: Final = 15.0
"""Seconds between comments on an idle stream of events, which also tell a closed page from an open one."""

STATIC: Final = {
    "/": ("index.html", "text/html"),
    "/console.js": ("console.js", "text/javascript"),
    "/console.css": ("console.css", "text/css"),
}

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token may be in the address
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

READER: Final = web.AppKey("reader", Reader)
HUB: Final = web.AppKey("hub", EventHub)
SETTINGS: Final = web.AppKey("settings", dict[str, Any])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and for a loopback address (``127.0.0.1``, ``::1``, ``[::1]``)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers, dumps=dumps)


def error_status(exc: BaseException) -> tuple[int, str] | None:
    """The HTTP status and message of an error a handler may meet; None for one not expected."""
    if isinstance(exc, CliError):
        if exc.code == USAGE:
            return 400, str(exc)
        if exc.code == NOT_FOUND:
            return 404, str(exc)
        return 502, str(exc)
    if isinstance(exc, QueryError):
        return 400, f"bad criteria: {exc}"
    if isinstance(exc, UnavailableError):
        return 503, f"NATS unavailable: {exc}"
    if isinstance(exc, StorageError):
        return 502, str(exc)
    return None


def presented_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.query.get("token")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The checks of every request, and errors as JSON."""
    settings = request.app[SETTINGS]
    if not settings["allow_remote"] and not is_loopback_host(request.url.host or ""):
        return error(403, "the console answers only requests for this machine (Host: localhost or 127.0.0.1)")
    api = request.path.startswith("/api/")
    token: str | None = settings["token"]
    if api and token is not None:
        given = presented_token(request)
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            return error(
                401,
                "a token is needed (Authorization: Bearer TOKEN, or ?token=TOKEN)",
                **{"WWW-Authenticate": 'Bearer realm="brainless console"'},
            )
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not api or exc.status < 400:
            raise
        return error(exc.status, exc.reason)
    except Exception as exc:
        known = error_status(exc)
        if known is None:
            logger.exception("console: %s %s failed", request.method, request.path)
            return error(500, f"internal error: {type(exc).__name__}")
        return error(*known)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def json(data: Any) -> web.Response:
    return web.json_response(data, dumps=dumps)


# -- the page ------------------------------------------------------------------------------------


def load_static() -> dict[str, tuple[bytes, str]]:
    """The page's files, read from the package once: path -> (content, content type)."""
    folder = resources.files("brainlessdb.console") / "static"
    return {path: ((folder / name).read_bytes(), kind) for path, (name, kind) in STATIC.items()}


def static_handler(content: bytes, kind: str) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.Response(body=content, content_type=kind, charset="utf-8")

    return serve


# -- the JSON endpoints --------------------------------------------------------------------------


async def get_info(request: web.Request) -> web.StreamResponse:
    return json(request.app[READER].info())


async def get_collections(request: web.Request) -> web.StreamResponse:
    return json({"collections": await request.app[READER].collections()})


async def get_entities(request: web.Request) -> web.StreamResponse:
    query = request.query
    limit = parse_limit(query.get("limit"))
    order_by = [key for value in query.getall("order_by", []) for key in value.replace(",", " ").split()]
    found = await request.app[READER].entities(
        request.match_info["name"], query.getall("where", []), order_by, limit
    )
    return json(found)


async def get_entity(request: web.Request) -> web.StreamResponse:
    name, uuid = request.match_info["name"], request.match_info["uuid"]
    found = await request.app[READER].entity(name, uuid)
    if found is None:
        return error(404, f"no entity {uuid!r} in collection {name!r}")
    return json(found)


async def get_dead_letters(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    return json({"collection": name, "dead_letters": await request.app[READER].dead_letters(name)})


async def get_nodes(request: web.Request) -> web.StreamResponse:
    nodes = await request.app[READER].nodes()
    if nodes is None:
        return error(404, "this version of the database does not list its nodes")
    return json({"nodes": nodes})


async def get_events(request: web.Request) -> web.StreamResponse:
    """Every change and delete as it happens: ``event: add|change|delete``, ``data:`` the JSON of it.

    A page that fell too far behind gets ``event: reset`` and the end of the stream: the browser connects
    again and the page reloads what it shows.
    """
    hub = request.app[HUB]
    keepalive: float = request.app[SETTINGS]["keepalive"]
    subscription = hub.subscribe()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    try:
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        while True:
            try:
                record = await subscription.next(keepalive)
            except asyncio.TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if record is None:
                if subscription.dropped:
                    await response.write(b"event: reset\ndata: {}\n\n")
                break
            await response.write(f"event: {record['event']}\ndata: {dumps(record)}\n\n".encode())
    except ConnectionResetError:
        pass  # the page was closed
    finally:
        hub.unsubscribe(subscription)
    return response


async def close_streams(app: web.Application) -> None:
    """On shutdown: end the open streams of events, so the server stops without waiting for them."""
    app[HUB].close()


def make_app(
    reader: Reader,
    *,
    token: str | None = None,
    allow_remote: bool = False,
    keepalive: float = KEEPALIVE,
) -> web.Application:
    """The console's application, over a started ``reader``."""
    app = web.Application(middlewares=[guard])
    app[READER] = reader
    app[HUB] = reader.hub
    app[SETTINGS] = {"token": token or None, "allow_remote": allow_remote, "keepalive": keepalive}
    for path, (content, kind) in load_static().items():
        app.router.add_get(path, static_handler(content, kind))
    app.router.add_get("/api/info", get_info)
    app.router.add_get("/api/collections", get_collections)
    app.router.add_get("/api/collections/{name}/entities", get_entities)
    app.router.add_get("/api/collections/{name}/entities/{uuid}", get_entity)
    app.router.add_get("/api/collections/{name}/dead-letters", get_dead_letters)
    app.router.add_get("/api/nodes", get_nodes)
    app.router.add_get("/api/events", get_events)
    app.on_response_prepare.append(security_headers)
    app.on_shutdown.append(close_streams)
    return app
