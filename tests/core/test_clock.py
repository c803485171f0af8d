"""The hybrid logical clock: monotonic on one node, past everything observed, close to wall time."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from brainlessdb.core.clock import COUNTER_BITS, HybridLogicalClock, hlc_from_ms, wall_ms

START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z


class FakeTime:
    """A wall clock the test moves by hand (backwards too)."""

    def __init__(self, ms: int = START_MS) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_ticks_increase_while_the_wall_clock_advances() -> None:
    time = FakeTime()
    clock = HybridLogicalClock("a", now_ms=time)
    stamps = []
    for _ in range(5):
        stamps.append(clock.tick())
        time.ms += 3
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)


def test_tick_takes_the_wall_clock_time_with_counter_zero_when_time_moved_on() -> None:
    time = FakeTime()
    clock = HybridLogicalClock("a", now_ms=time)
    clock.tick()
    time.ms += 1
    assert clock.tick() == (hlc_from_ms(START_MS + 1), "a")


def test_ticks_increase_while_the_wall_clock_stands_still() -> None:
    clock = HybridLogicalClock("a", now_ms=FakeTime())
    stamps = [clock.tick() for _ in range(1000)]
    assert all(earlier < later for earlier, later in itertools.pairwise(stamps))
    assert all(wall_ms(hlc) == START_MS for hlc, _ in stamps)


def test_ticks_increase_when_the_wall_clock_goes_backwards() -> None:
    time = FakeTime()
    clock = HybridLogicalClock("a", now_ms=time)
    before = clock.tick()
    time.ms -= 60_000
    after = clock.tick()
    assert after > before
    assert wall_ms(after[0]) == START_MS


def test_counter_overflow_carries_into_the_milliseconds_and_stays_monotonic() -> None:
    clock = HybridLogicalClock("a", now_ms=FakeTime())
    clock.observe(hlc_from_ms(START_MS) + (1 << COUNTER_BITS) - 1)
    stamp = clock.tick()
    assert stamp[0] == hlc_from_ms(START_MS + 1)


def test_tick_after_observing_a_value_from_the_future_is_greater_than_it() -> None:
    clock = HybridLogicalClock("a", now_ms=FakeTime())
    clock.tick()
    remote = hlc_from_ms(START_MS + 10_000) + 7
    clock.observe(remote)
    assert clock.tick()[0] > remote
    assert clock.last > remote


def test_observing_an_older_value_does_not_move_the_clock_back() -> None:
    clock = HybridLogicalClock("a", now_ms=FakeTime())
    stamp = clock.tick()
    clock.observe(hlc_from_ms(START_MS - 5_000))
    assert clock.last == stamp[0]
    assert clock.tick() > stamp


def test_stamps_of_two_clocks_at_the_same_time_are_ordered_by_node() -> None:
    time = FakeTime()
    first = HybridLogicalClock("brno-1", now_ms=time).tick()
    second = HybridLogicalClock("prague-1", now_ms=time).tick()
    assert first[0] == second[0]
    assert first < second
    assert max(second, first) == second


def test_a_fresh_clock_uses_the_system_time_by_default() -> None:
    clock = HybridLogicalClock("a")
    hlc, node = clock.tick()
    assert node == "a"
    assert wall_ms(hlc) > START_MS


@given(st.integers(min_value=0, max_value=2**47))
def test_wall_ms_of_hlc_from_ms_round_trips(ms: int) -> None:
    assert wall_ms(hlc_from_ms(ms)) == ms


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_hlc_from_ms_of_wall_ms_drops_only_the_counter(hlc: int) -> None:
    floor = hlc_from_ms(wall_ms(hlc))
    assert floor <= hlc < floor + (1 << COUNTER_BITS)


_steps = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(min_value=-5_000, max_value=5_000)),
        st.tuples(st.just("tick"), st.just(0)),
        st.tuples(st.just("observe"), st.integers(min_value=-100_000, max_value=100_000)),
    ),
    max_size=60,
)


@settings(max_examples=200)
@given(_steps)
def test_ticks_are_strictly_monotonic_and_never_behind_wall_or_observed_time(
    steps: list[tuple[str, int]],
) -> None:
    time = FakeTime()
    clock = HybridLogicalClock("a", now_ms=time)
    previous = clock.tick()
    floor = previous[0]  # the greatest value issued or observed so far
    for action, amount in steps:
        if action == "advance":
            time.ms += amount
        elif action == "observe":
            seen = hlc_from_ms(START_MS) + amount * 97
            clock.observe(seen)
            floor = max(floor, seen)
            assert clock.last == floor
        else:
            stamp = clock.tick()
            assert stamp > previous
            assert stamp[0] > floor
            assert wall_ms(stamp[0]) >= time.ms
            previous = stamp
            floor = stamp[0]
