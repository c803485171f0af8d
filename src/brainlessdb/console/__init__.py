"""The live read-only web console: ``brainless console --listen 127.0.0.1:8080``.

A small aiohttp server (the ``console`` extra) and one static page with plain JavaScript and CSS. It shows
a namespace as the ``brainless`` command does, through the same connection options and the same code:
collections, an entity table with ``find``'s criteria, one entity with each field's time and origin,
dead letters, the nodes when the database lists them, and changes pushed to the page as Server-Sent
Events. It never writes.

- ``reader``: what the page shows, read from a database started on the command's connection;
- ``events``: the changes of every collection, fanned out to each open page;
- ``app``: the HTTP side: routes, the token, the checks every request passes, the static page;
- ``command``: ``brainless console``: the listen address, then serving until Ctrl-C or SIGTERM.
"""
