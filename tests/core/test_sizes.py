"""The size check on its own: what it measures, and when (no event loop, no storage).

Entities come from a database that is never started; the collection is given its limit directly, as the
shell does at start.
"""

from __future__ import annotations

from typing import Any

import pytest

from brainlessdb import Brainless, SchemaError
from brainlessdb.core.codec import encode_entity
from brainlessdb.core.meta import meta
from brainlessdb.core.sizes import SizeGuard

LIMIT = 64 * 1024


def collection(limit: int = LIMIT) -> Any:
    db = Brainless(None, namespace="t", location="prague-1")
    calls = db.call
    calls.limit_values(limit)
    return calls


def stored_size(entity: Any) -> int:
    return len(encode_entity(entity._data, entity._stamps))


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the entities the guard encodes, one per measure."""
    sizes: list[int] = []
    measure = SizeGuard._measure

    def counting(self: SizeGuard, data: dict[str, Any], stamps: Any, extras: Any = None) -> int:
        size = measure(self, data, stamps, extras)
        sizes.append(size)
        return size

    monkeypatch.setattr(SizeGuard, "_measure", counting)
    return sizes


def test_small_scalar_changes_of_ordinary_entities_are_never_measured(measured: list[int]) -> None:
    calls = collection()
    entities = [calls.add(state="new", n=0, ok=False, note="", caller={"city": "Prague"}) for _ in range(50)]
    for round_ in range(20):
        for entity in entities:
            entity.n = round_
            entity.state = f"state {round_}"
            entity.ok = not entity.ok
            entity.note = "x" * 100  # up to SHORT_TEXT characters: a small change
    assert measured == []


def test_a_change_that_can_grow_the_entity_much_is_counted_without_encoding_it_each_time(
    measured: list[int],
) -> None:
    calls = collection()
    call = calls.add(state="new", tags=[])
    for i in range(200):
        call.tags.append(f"tag {i}")
    # Measured once (its bound was unknown), then counted from the values given.
    assert len(measured) <= 2, len(measured)


def test_near_the_limit_the_check_is_exact(measured: list[int]) -> None:
    calls = collection()
    call = calls.add(state="new", note="")
    call.note = "n" * (LIMIT - 200)
    before = len(measured)
    call.state = "ok"  # a small change of a large entity: measured exactly only if its bound says so
    with pytest.raises(SchemaError):
        call.note = "n" * LIMIT
    assert len(measured) > before
    assert stored_size(call) <= LIMIT


def test_a_refused_change_inside_a_container_puts_it_back_as_it_was() -> None:
    calls = collection()
    call = calls.add(state="new", caller={"inner": {"a": 1}, "list": [1, 2]}, tags=["a"])
    caller = call.caller
    inner, items = caller["inner"], caller["list"]
    tags = call.tags
    big = "x" * LIMIT
    for change in (
        lambda: caller.__setitem__("bio", big),
        lambda: caller.update(bio=big),
        lambda: inner.__setitem__("b", big),
        lambda: items.append(big),
        lambda: items.extend([big]),
        lambda: items.insert(0, big),
        lambda: tags.__setitem__(slice(0, 1), [big]),
    ):
        with pytest.raises(SchemaError):
            change()
    assert meta(call).data == {"state": "new", "caller": {"inner": {"a": 1}, "list": [1, 2]}, "tags": ["a"]}
    # The containers the caller holds are still the entity's, and still tracked.
    assert caller["inner"] is inner and caller["list"] is items and call.tags is tags
    version = call._version
    inner["b"] = 2
    assert call.caller["inner"] == {"a": 1, "b": 2}
    assert call._version == version + 1  # a tracked change, as before


def test_repeating_a_list_is_counted_as_it_grows() -> None:
    calls = collection()
    call = calls.add(state="new", tags=["y" * 1000])
    with pytest.raises(SchemaError):
        call.tags *= 100
    assert call.tags == ["y" * 1000]
    call.tags *= 10
    assert len(call.tags) == 10


def test_without_a_limit_nothing_is_checked() -> None:
    calls = collection()
    calls.limit_values(None)
    call = calls.add(state="new", note="x" * (2 * LIMIT))
    call.note = "y" * (3 * LIMIT)
    assert len(call.note) == 3 * LIMIT


def test_entities_held_when_the_limit_is_given_are_measured() -> None:
    db = Brainless(None, namespace="t", location="prague-1")
    call = db.call.add(state="new", note="x" * (2 * LIMIT))  # no limit known yet
    db.call.limit_values(LIMIT)
    with pytest.raises(SchemaError):
        call.state = "still too large"
    call.note = "small"
    call.state = "fine"
