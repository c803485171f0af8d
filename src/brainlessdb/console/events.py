"""Changes for the open pages: one listener per collection, each event copied to every subscriber.

A subscriber is one open page (one Server-Sent Events response). It gets every change and delete of every
followed collection, this node's and others', as ``watch --json`` prints them. A page that falls more than
``limit`` events behind is dropped (its stream ends, the browser reconnects and reloads what it shows)
rather than holding the events in memory without bound.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from brainlessdb.cli.commands import change_json
from brainlessdb.core.collection import Collection
from brainlessdb.events import Change, Delete

DEFAULT_LIMIT: Final = 1000


class Subscription:
    """The events waiting for one page; ``None`` in the queue ends it (dropped, or the console stops)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.dropped = False

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event; raises ``TimeoutError`` (asyncio's) after ``timeout`` seconds without one."""
        return await asyncio.wait_for(self.queue.get(), timeout)


class EventHub:
    """Follows collections and fans their events out to the subscriptions."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._subscriptions: set[Subscription] = set()
        self._followed: set[str] = set()
        self._closed = False
        self.published = 0

    def follow(self, collection: Collection[Any]) -> None:
        """Listen to the collection's changes and deletes, local and remote (once per collection)."""
        if collection.name in self._followed:
            return
        self._followed.add(collection.name)
        collection.on_change(self._publish, local=True, remote=True)
        collection.on_delete(self._publish, local=True, remote=True)

    @property
    def followed(self) -> frozenset[str]:
        return frozenset(self._followed)

    def subscribe(self) -> Subscription:
        subscription = Subscription()
        if self._closed:
            subscription.queue.put_nowait(None)
        else:
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def __len__(self) -> int:
        return len(self._subscriptions)

    def close(self) -> None:
        """End every subscription (the console stops): each open stream finishes."""
        self._closed = True
        for subscription in list(self._subscriptions):
            self._end(subscription)

    def _publish(self, event: Change | Delete) -> None:
        record = {**change_json(event), "origin": event.origin}
        self.published += 1
        for subscription in list(self._subscriptions):
            if subscription.queue.qsize() >= self.limit:
                subscription.dropped = True
                self._end(subscription)
            else:
                subscription.queue.put_nowait(record)

    def _end(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        subscription.queue.put_nowait(None)

    def __repr__(self) -> str:
        return (
            f"<EventHub {len(self._followed)} collections followed, {len(self._subscriptions)} pages, "
            f"{self.published} events>"
        )
