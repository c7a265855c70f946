"""Media workers declared gone after three missed heartbeats (virtual time)."""

from __future__ import annotations

from services.signaling.b2bua.media_watch import WorkerWatch


def test_a_worker_silent_for_three_intervals_is_gone_once() -> None:
    watch = WorkerWatch()
    watch.alive("w1", 0.0, interval_s=1.0)
    watch.alive("w2", 0.0, interval_s=5.0)
    assert watch.gone(2.9) == []
    watch.alive("w1", 2.9)
    assert watch.gone(5.8) == []
    assert watch.gone(6.0) == ["w1"]
    assert watch.gone(6.1) == []  # reported once
    assert watch.gone(15.1) == ["w2"]  # its own, longer interval


def test_a_worker_heard_again_is_watched_again() -> None:
    watch = WorkerWatch(default_interval_s=1.0)
    watch.alive("w1", 0.0)
    assert watch.gone(3.5) == ["w1"]
    watch.alive("w1", 10.0)  # restarted under the same name
    assert watch.gone(12.0) == []
    watch.forget("w1")
    assert watch.gone(100.0) == []
