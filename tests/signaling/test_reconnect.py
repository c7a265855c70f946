"""Agents away from a connected call (services/signaling/b2bua/reconnect.py), on a virtual clock."""

from __future__ import annotations

from services.signaling.b2bua.reconnect import Reconnections

AOR = "100@acme.example"
BROWSER = "<urn:uuid:00000000-0000-4000-8000-000000000001>"


def test_an_agent_back_within_the_grace_keeps_its_calls() -> None:
    ends = Reconnections(grace_s=30.0)
    away = ends.lost("call-1", None, AOR, BROWSER, now=100.0)
    assert away is not None
    assert away.deadline == 130.0
    assert ends.next_deadline() == 130.0
    assert ends.due(129.9) == []
    [back] = ends.returned(AOR, BROWSER)
    assert (back.call_id, back.slot) == ("call-1", None)
    assert ends.due(1000.0) == []
    assert ends.next_deadline() is None


def test_an_agent_not_back_in_time_loses_only_its_own_calls() -> None:
    ends = Reconnections(grace_s=10.0)
    ends.lost("call-1", None, AOR, BROWSER, now=0.0)
    ends.lost("call-2", 3, "101@acme.example", BROWSER, now=5.0)
    [expired] = ends.due(10.0)
    assert (expired.call_id, expired.slot) == ("call-1", None)
    assert ends.returned(AOR, BROWSER) == []  # too late: the call is gone
    assert ends.away("call-2")
    assert ends.next_deadline() == 15.0


def test_another_device_of_the_same_agent_is_not_the_one_that_left() -> None:
    ends = Reconnections(grace_s=10.0)
    ends.lost("call-1", 0, AOR, BROWSER, now=0.0)
    assert ends.returned(AOR, "<urn:uuid:00000000-0000-4000-8000-000000000002>") == []
    assert ends.returned("102@acme.example", BROWSER) == []
    assert ends.returned(AOR, None) == []
    assert len(ends) == 1


def test_without_an_instance_or_a_grace_the_call_ends_at_once() -> None:
    assert Reconnections(grace_s=10.0).lost("call-1", None, AOR, None, now=0.0) is None
    assert Reconnections(grace_s=0.0).lost("call-1", None, AOR, BROWSER, now=0.0) is None


def test_a_call_ended_otherwise_is_forgotten() -> None:
    ends = Reconnections(grace_s=10.0)
    ends.lost("call-1", None, AOR, BROWSER, now=0.0)
    ends.forget("call-1")
    assert not ends.away("call-1")
    assert ends.due(100.0) == []
