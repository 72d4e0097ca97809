"""Time-ordered ids (UUIDv7) for rows written as they happen: valid version-7 UUIDs, ordered by the millisecond."""

from __future__ import annotations

import time
import uuid

from license_server.db.base import ordered_id


def test_an_ordered_id_is_a_version_7_rfc_uuid_carrying_the_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    made = ordered_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after


def test_ordered_ids_sort_by_when_they_were_made_and_never_repeat() -> None:
    earlier = [ordered_id() for _ in range(1000)]
    time.sleep(0.002)
    later = [ordered_id() for _ in range(1000)]
    assert max(earlier) < min(later)  # a later millisecond sorts after, as text too (the hex SQLite stores)
    assert max(e.hex for e in earlier) < min(x.hex for x in later)
    assert len(set(earlier + later)) == 2000
    assert len({made.int & ((1 << 74) - 1) for made in earlier}) == 1000  # the random bits differ within a millisecond
