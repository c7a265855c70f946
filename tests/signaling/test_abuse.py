"""SourceGuard: rate limit, failed-auth bans, scanner detection, trust, memory; on a virtual clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.signaling.abuse import (
    DEFAULT_SCANNER_AGENTS,
    GuardPolicy,
    SourceGuard,
    Verdict,
    is_scanner_agent,
    scanner_matcher,
)

T0 = 1_000.0
ATTACKER = "10.0.0.66"
AGENT = "10.0.0.7"
CARRIER = "198.51.100.20"
PHONE = "Yealink SIP-T54W 96.86.0.100"


def guard(**overrides: object) -> SourceGuard:
    return SourceGuard(GuardPolicy(**overrides))  # type: ignore[arg-type]


# --- scanners -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user_agent",
    [
        "friendly-scanner",
        "Friendly-Scanner",
        "sipvicious",
        "SIPVicious PRO 1.2",
        "sipcli/v1.8",
        "sip-scan",
        "SIPScan",
        "sundayddr",
        "iWar",
        "VaxSIPUserAgent/3.1",
        "pplsip",
        "smap 0.6.0",
        "sipptk",
        "friendly-request",
    ],
)
def test_scanner_agents_are_recognised(user_agent: str) -> None:
    assert is_scanner_agent(user_agent)


@pytest.mark.parametrize(
    "user_agent",
    [
        None,
        "",
        "sipp",
        "SIPp/v3.7.3",
        "sipsak 0.9.8",
        "Asterisk PBX 1.6.2.24",
        "Asterisk PBX 20.5.0",
        "Cisco-SIPGateway/IOS-15.x",
        "X-Lite release 5.8.3",
        "SIP.js/0.21.2",
        "Linphone Desktop/5.2.1",
        PHONE,
        "Bismap/1.0",  # "smap" only as a word
        "Kiwar-Phone",  # "iwar" only as a word
        "FreeSWITCH-mod_sofia/1.10.11",
    ],
)
def test_legitimate_agents_are_not_scanners(user_agent: str | None) -> None:
    assert not is_scanner_agent(user_agent)


def test_scanner_is_dropped_silently_then_banned_while_a_client_elsewhere_keeps_registering() -> None:
    g = guard()
    assert g.check(ATTACKER, "friendly-scanner", T0) is Verdict.DROP_SILENTLY
    assert g.banned(ATTACKER, T0)
    # Even with an innocent User-Agent the banned source stays out.
    assert g.check(ATTACKER, PHONE, T0 + 1) is Verdict.BANNED
    for i in range(20):
        assert g.check(AGENT, PHONE, T0 + i * 60) is Verdict.ALLOW
        g.auth_succeeded(AGENT, T0 + i * 60)
    assert not g.banned(AGENT, T0 + 1200)
    assert g.counters.scanners_dropped == 1
    assert g.counters.refused_while_banned == 1
    assert g.counters.bans == 1


def test_custom_scanner_list_and_empty_list() -> None:
    g = guard(scanner_agents=("evilscan",))
    assert g.check(ATTACKER, "EvilScan/2", T0) is Verdict.DROP_SILENTLY
    assert g.check(AGENT, "friendly-scanner", T0) is Verdict.ALLOW
    assert scanner_matcher(()).search("friendly-scanner") is None


def test_default_list_has_no_legitimate_test_tools() -> None:
    assert not {"sipp", "sipsak"} & set(DEFAULT_SCANNER_AGENTS)


# --- rate -----------------------------------------------------------------------------------------


def test_burst_then_rate_limited_then_refilled() -> None:
    g = guard(rate_per_s=2.0, burst=5.0)
    verdicts = [g.check(ATTACKER, PHONE, T0) for _ in range(7)]
    assert verdicts == [Verdict.ALLOW] * 5 + [Verdict.RATE_LIMITED] * 2
    assert g.wait_s(ATTACKER, T0) == pytest.approx(0.5)
    # Half a second gives back one token at 2/s.
    assert g.check(ATTACKER, PHONE, T0 + 0.5) is Verdict.ALLOW
    assert g.check(ATTACKER, PHONE, T0 + 0.5) is Verdict.RATE_LIMITED
    # Never above the burst however long the pause.
    later = T0 + 3600
    assert [g.check(ATTACKER, PHONE, later) for _ in range(6)].count(Verdict.ALLOW) == 5
    assert g.counters.rate_limited == 4


def test_rate_limit_of_one_source_leaves_another_alone() -> None:
    g = guard(rate_per_s=1.0, burst=2.0, flood_requests_to_ban=None)
    for _ in range(50):
        g.check(ATTACKER, PHONE, T0)
    assert g.check(AGENT, PHONE, T0) is Verdict.ALLOW
    assert g.wait_s(AGENT, T0) == 0.0
    assert g.wait_s("10.9.9.9", T0) == 0.0  # never seen


def test_sustained_flood_becomes_a_ban() -> None:
    g = guard(rate_per_s=10.0, burst=10.0, flood_requests_to_ban=20, flood_window_s=10.0, ban_s=60.0)
    verdicts = [g.check(ATTACKER, PHONE, T0) for _ in range(30)]
    assert verdicts[:10] == [Verdict.ALLOW] * 10
    assert verdicts[10:29] == [Verdict.RATE_LIMITED] * 19
    assert verdicts[29] is Verdict.BANNED
    assert g.banned(ATTACKER, T0 + 59.9)
    assert g.wait_s(ATTACKER, T0 + 30) == pytest.approx(30.0)
    assert not g.banned(ATTACKER, T0 + 60)


def test_rate_limited_requests_spread_over_windows_do_not_ban() -> None:
    g = guard(rate_per_s=1.0, burst=1.0, flood_requests_to_ban=3, flood_window_s=10.0)
    now = T0
    for _ in range(5):
        assert g.check(ATTACKER, PHONE, now) is Verdict.ALLOW
        assert g.check(ATTACKER, PHONE, now) is Verdict.RATE_LIMITED
        assert g.check(ATTACKER, PHONE, now) is Verdict.RATE_LIMITED
        now += 10.0  # a fresh sampling window each time
    assert not g.banned(ATTACKER, now)


def test_clock_stepping_back_does_not_drain_or_refill() -> None:
    g = guard(rate_per_s=1.0, burst=2.0)
    assert g.check(ATTACKER, PHONE, T0) is Verdict.ALLOW
    assert g.check(ATTACKER, PHONE, T0 - 100) is Verdict.ALLOW
    assert g.check(ATTACKER, PHONE, T0 - 100) is Verdict.RATE_LIMITED


# --- failed authentication ------------------------------------------------------------------------


def test_failures_within_the_window_ban() -> None:
    g = guard(failures_to_ban=3, failure_window_s=60.0, ban_s=300.0)
    assert not g.auth_failed(ATTACKER, T0)
    assert not g.auth_failed(ATTACKER, T0 + 10)
    assert g.auth_failed(ATTACKER, T0 + 59)
    assert g.check(ATTACKER, PHONE, T0 + 60) is Verdict.BANNED
    assert g.check(AGENT, PHONE, T0 + 60) is Verdict.ALLOW
    assert g.check(ATTACKER, PHONE, T0 + 59 + 300) is Verdict.ALLOW
    assert g.counters.auth_failures == 3


def test_failures_spread_wider_than_the_window_do_not_ban() -> None:
    g = guard(failures_to_ban=3, failure_window_s=60.0)
    for i in range(10):
        assert not g.auth_failed(ATTACKER, T0 + i * 31)  # any three span 62 s
    assert not g.banned(ATTACKER, T0 + 400)


def test_success_resets_the_count_unless_configured_not_to() -> None:
    g = guard(failures_to_ban=3)
    g.auth_failed(AGENT, T0)
    g.auth_failed(AGENT, T0 + 1)
    g.auth_succeeded(AGENT, T0 + 2)
    assert not g.auth_failed(AGENT, T0 + 3)
    assert not g.auth_failed(AGENT, T0 + 4)
    assert g.auth_failed(AGENT, T0 + 5)

    strict = guard(failures_to_ban=3, reset_failures_on_success=False)
    strict.auth_failed(AGENT, T0)
    strict.auth_failed(AGENT, T0 + 1)
    strict.auth_succeeded(AGENT, T0 + 2)
    assert strict.auth_failed(AGENT, T0 + 3)
    # An unknown source succeeding is nothing to forget.
    strict.auth_succeeded("10.1.1.1", T0)
    g.auth_succeeded("10.1.1.1", T0)
    assert g.tracked_sources == 1


def test_failure_during_a_ban_is_already_covered() -> None:
    g = guard(failures_to_ban=2, ban_s=100.0)
    g.auth_failed(ATTACKER, T0)
    assert g.auth_failed(ATTACKER, T0 + 1)
    until = g.ban(ATTACKER, T0 + 2)
    assert not g.auth_failed(ATTACKER, T0 + 2)
    assert not g.auth_failed(ATTACKER, T0 + 3)
    assert until == pytest.approx(T0 + 101)  # the ban in force was kept


def test_repeat_offenders_get_longer_bans_up_to_the_cap() -> None:
    g = guard(ban_s=100.0, ban_growth=3.0, max_ban_s=1000.0, offence_memory_s=10_000.0)
    now = T0
    durations = []
    for _ in range(5):
        until = g.ban(ATTACKER, now)
        durations.append(until - now)
        now = until
    assert durations == [100.0, 300.0, 900.0, 1000.0, 1000.0]
    # Forgiven once the memory of the last offence has passed.
    now += 10_001.0
    assert g.ban(ATTACKER, now) - now == 100.0


def test_scanner_coming_back_after_its_ban_is_banned_longer() -> None:
    g = guard(ban_s=60.0)
    assert g.check(ATTACKER, "sipvicious", T0) is Verdict.DROP_SILENTLY
    assert g.check(ATTACKER, "sipvicious", T0 + 60) is Verdict.DROP_SILENTLY
    assert g.banned(ATTACKER, T0 + 60 + 119)
    assert not g.banned(ATTACKER, T0 + 60 + 120)


# --- trust ----------------------------------------------------------------------------------------


def test_trusted_networks_are_never_limited_or_banned() -> None:
    g = guard(rate_per_s=1.0, burst=1.0, failures_to_ban=1, trusted=("198.51.100.0/24", "2001:db8:c::/48"))
    for _ in range(100):
        assert g.check(CARRIER, "friendly-scanner", T0) is Verdict.ALLOW
        assert not g.auth_failed(CARRIER, T0)
    assert g.ban(CARRIER, T0) == T0
    assert not g.banned(CARRIER, T0)
    assert g.wait_s(CARRIER, T0) == 0.0
    assert g.check("2001:db8:c::9", None, T0) is Verdict.ALLOW
    assert g.trusted("198.51.100.250")
    assert not g.trusted("198.51.101.1")
    assert g.tracked_sources == 0
    assert g.counters.auth_failures == 0


def test_trust_replaced_at_run_time_wins_over_an_earlier_ban() -> None:
    g = guard()
    g.check(CARRIER, "sipcli", T0)
    assert g.banned(CARRIER, T0)
    g.set_trusted(["198.51.100.20/32"])
    assert g.check(CARRIER, PHONE, T0 + 1) is Verdict.ALLOW
    assert not g.banned(CARRIER, T0 + 1)
    g.set_trusted([])
    assert g.check(CARRIER, PHONE, T0 + 2) is Verdict.BANNED


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="burst"):
        GuardPolicy(burst=0.5)
    with pytest.raises(ValueError, match="failures_to_ban"):
        GuardPolicy(failures_to_ban=0)
    with pytest.raises(ValueError, match="ban_s"):
        GuardPolicy(ban_s=100.0, max_ban_s=10.0)
    with pytest.raises(ValueError, match="flood_requests_to_ban"):
        GuardPolicy(flood_requests_to_ban=0)
    with pytest.raises(ValueError, match="flood_window_s"):
        GuardPolicy(flood_window_s=0)
    with pytest.raises(ValueError, match="max_sources"):
        GuardPolicy(max_sources=0)
    with pytest.raises(ValueError, match="ipv6_prefix"):
        GuardPolicy(ipv6_prefix=129)
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        SourceGuard(GuardPolicy(trusted=("carrier.example",)))
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        guard().check("not-an-address", None, T0)


# --- addresses ------------------------------------------------------------------------------------


def test_ipv4_mapped_ipv6_is_the_ipv4_host() -> None:
    g = guard()
    g.check("::ffff:10.0.0.66", "friendly-scanner", T0)
    assert g.banned(ATTACKER, T0)
    assert g.check(ATTACKER, None, T0) is Verdict.BANNED


def test_ipv6_sources_are_tracked_per_prefix() -> None:
    g = guard()
    g.check("2001:db8:1:2::1", "sipvicious", T0)
    assert g.banned("2001:db8:1:2:ffff::99", T0)  # same /64, another address
    assert not g.banned("2001:db8:1:3::1", T0)
    single = guard(ipv6_prefix=128)
    single.check("2001:db8:1:2::1", "sipvicious", T0)
    assert not single.banned("2001:db8:1:2::2", T0)


# --- memory ---------------------------------------------------------------------------------------


def test_sweep_forgets_only_sources_back_to_a_strangers_state() -> None:
    g = guard(rate_per_s=10.0, burst=20.0, failure_window_s=60.0, ban_s=100.0, offence_memory_s=500.0)
    g.check("10.0.0.1", PHONE, T0)  # bucket full again after 2 s
    g.auth_failed("10.0.0.2", T0)  # remembered for the failure window
    g.check("10.0.0.3", "sipvicious", T0)  # banned, then remembered as an offender
    assert g.tracked_sources == 3
    assert g.sweep(T0 + 1) == 0
    assert g.sweep(T0 + 2) == 1
    assert g.sweep(T0 + 61) == 1
    assert g.sweep(T0 + 200) == 0  # ban over, offence still remembered
    assert g.sweep(T0 + 501) == 1
    assert g.tracked_sources == 0
    assert g.counters.evicted == 3


def test_tracked_sources_are_capped_least_recent_first() -> None:
    g = guard(max_sources=3)
    for i in range(3):
        g.check(f"10.0.1.{i}", "sipcli", T0 + i)
    g.check("10.0.1.0", None, T0 + 5)  # seen again: most recent now
    g.check("10.0.1.9", None, T0 + 6)  # pushes out 10.0.1.1
    assert g.tracked_sources == 3
    assert g.banned("10.0.1.0", T0 + 6)
    assert not g.banned("10.0.1.1", T0 + 6)
    assert g.banned("10.0.1.2", T0 + 6)
    assert g.counters.evicted == 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "2001:db8::1"]),
            st.sampled_from([None, PHONE, "sipvicious"]),
            st.floats(min_value=0, max_value=5, allow_nan=False),
            st.booleans(),
        ),
        max_size=60,
    )
)
def test_memory_stays_bounded_and_verdicts_stay_valid(
    events: list[tuple[str, str | None, float, bool]],
) -> None:
    g = guard(max_sources=3, rate_per_s=1.0, burst=2.0, failures_to_ban=2)
    now = T0
    for source, user_agent, step, fail in events:
        now += step
        verdict = g.check(source, user_agent, now)
        assert verdict in set(Verdict)
        if fail:
            g.auth_failed(source, now)
        assert g.tracked_sources <= 3
        if verdict is Verdict.DROP_SILENTLY:
            assert g.banned(source, now)
        assert g.wait_s(source, now) >= 0
