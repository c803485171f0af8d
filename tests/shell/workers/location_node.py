"""A node of one location in a process of its own, driven by JSON lines on its standard input.

    python -m tests.shell.workers.location_node URL NAMESPACE LOCATION DOMAIN PEER[,PEER...]

Prints ``{"ready": LOCATION}`` once started, then answers each command with one JSON line:

- ``{"add": {...fields}}`` → ``{"uuid": ...}``: a new entity of collection ``call``;
- ``{"set": uuid, "field": name, "value": v}``, ``{"key": uuid, "field": name, "name": k, "value": v}``
  (a key of a dict field), ``{"increment": uuid, "field": name, "by": n}``, ``{"delete": uuid}`` →
  ``{"ok": true}`` (``{"ok": false}`` when this node does not hold the entity);
- ``{"flush": true}`` → ``{"ok": true}`` once NATS acknowledged everything;
- ``{"wait": uuid, "field": name, "value": v, "timeout": s}`` → ``{"seconds": t}`` once this node holds
  that value (``{"seconds": null}`` after the timeout); ``"value": null`` with ``"gone": true`` waits for
  the entity to be deleted;
- ``{"dump": true}`` → ``{"entities": {uuid: fields}}``;
- ``{"stop": true}`` → ``{"stopped": true}``, and the process exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from brainlessdb import Brainless, meta


def say(**message: Any) -> None:
    print(json.dumps(message), flush=True)


async def lines() -> Any:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        yield json.loads(line)


async def main(url: str, namespace: str, location: str, domain: str, peers: list[str]) -> None:
    db = Brainless(
        url, namespace=namespace, location=location, domain=domain, peers=peers, flush_interval=0.02
    )
    await db.start()
    calls = db.call
    await calls.all()  # attached: its bucket sources the peers from now on
    say(ready=location)
    try:
        async for command in lines():
            if "add" in command:
                say(uuid=calls.add(**command["add"]).uuid)
            elif "flush" in command:
                await db.flush()
                say(ok=True)
            elif "wait" in command:
                say(seconds=await wait(db, command))
            elif "dump" in command:
                say(entities={uuid: meta(entity).data for uuid, entity in calls.entities.items()})
            elif "stop" in command:
                break
            else:
                say(ok=change(db, command))
    finally:
        await db.stop(timeout=10)
    say(stopped=True)


def change(db: Brainless, command: dict[str, Any]) -> bool:
    calls = db.call
    uuid = next(command[verb] for verb in ("set", "key", "increment", "delete") if verb in command)
    if uuid not in calls:
        return False
    if "set" in command:
        calls[uuid][command["field"]] = command["value"]
    elif "key" in command:
        calls[uuid][command["field"]][command["name"]] = command["value"]
    elif "increment" in command:
        calls.increment(uuid, command["field"], command["by"])
    else:
        calls.delete(uuid)
    return True


async def wait(db: Brainless, command: dict[str, Any]) -> float | None:
    calls, uuid = db.call, command["wait"]
    started = time.monotonic()
    deadline = started + command["timeout"]
    while time.monotonic() < deadline:
        if command.get("gone"):
            if uuid not in calls:
                return time.monotonic() - started
        elif uuid in calls and meta(calls[uuid]).get(command["field"]) == command["value"]:
            return time.monotonic() - started
        await asyncio.sleep(0.002)
    return None


if __name__ == "__main__":
    url, namespace, location, domain, peers = sys.argv[1:]
    asyncio.run(main(url, namespace, location, domain, peers.split(",")))
