"""The wait estimate's arithmetic: (position + 1) x a recent per-job GPU time, per model."""

from __future__ import annotations

from voiceq.queue_wait import QueuePlace, WaitEstimator


def test_no_estimate_before_a_measure_then_position_plus_one_times_the_recent_mean() -> None:
    waits = WaitEstimator(weight=0.5)
    assert waits.place("chatterbox", 3) == QueuePlace(position=3, estimated_wait_s=None)
    waits.record("chatterbox", 0.0)  # no GPU share recorded: nothing learned
    assert waits.rates() == {}
    waits.record("chatterbox", 2.0)
    waits.record("chatterbox", 4.0)  # halfway to the newest: 3.0
    assert waits.place("chatterbox", 0) == QueuePlace(position=0, estimated_wait_s=3.0)
    assert waits.place("chatterbox", 2).estimated_wait_s == 9.0
    assert waits.place("chatterbox-turbo", 0).estimated_wait_s is None  # each model its own
