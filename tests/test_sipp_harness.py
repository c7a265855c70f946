"""The sipp harness proven sipp against sipp, before any EchoDesk code is its peer: the UAC
scenarios against the carrier UAS scenarios, over UDP and TCP on 127.0.0.1, every run bounded by
sipp's own timeouts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.sipp import (
    Sipp,
    SippBuild,
    SippUnsupported,
    Transport,
    authentication_field,
    free_port,
    register_row,
    require_sipp,
)

pytestmark = pytest.mark.needs_sipp

TRANSPORTS = [pytest.param("u1", id="udp"), pytest.param("t1", id="tcp")]
CARRIER = [["trunk1", "s3cret"]]


@pytest.fixture(autouse=True)
def sipp_build() -> SippBuild:
    return require_sipp()


def carrier(
    tmp_path: Path, transport: Transport, calls: int, scenario: str = "carrier_registrar_uas"
) -> Sipp:
    # A bounded server: -m ends it once the expected calls are done, its timeout otherwise.
    return Sipp(scenario, tmp_path, transport=transport, injection=CARRIER, calls=calls, timeout=8)


def agent(tmp_path: Path, remote: str, transport: Transport, password: str, expires: int = 3600) -> Sipp:
    return Sipp(
        "register_digest_uac",
        tmp_path,
        remote=remote,
        transport=transport,
        injection=[register_row("trunk1", password, "carrier.test", expires)],
        calls=1,
        auth_uri="carrier.test",
        timeout=8,
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_digest_registration_and_unregistration(tmp_path: Path, transport: Transport) -> None:
    with carrier(tmp_path, transport, calls=2) as registrar:
        result = agent(tmp_path, registrar.address, transport, "s3cret").run()
        result.assert_success(calls=1)
        # The carrier challenges every REGISTER that starts a call: the registration (one call)
        # and the unREGISTER (a second call on the same Call-ID).
        served = registrar.wait()
    served.assert_success(calls=2)
    assert served.count("401", "Sent") == 2, served.describe()
    assert served.count("200", "Sent") == 2, served.describe()
    assert result.count("401", "Recv") == 2, result.describe()
    assert result.count("200", "Recv") == 2, result.describe()
    messages = result.files.messages.read_text()
    assert 'uri="sip:carrier.test"' in messages  # -auth_uri: the digest uri is the Request-URI
    assert "nc=00000002" in messages  # the unREGISTER reused the first challenge
    assert ";expires=3600" in messages  # the carrier echoed the Contact and its expiry
    assert "credentials valid=true" in served.scenario_log


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_password_is_refused_with_403(tmp_path: Path, transport: Transport) -> None:
    with carrier(tmp_path, transport, calls=1) as registrar:
        result = agent(tmp_path, registrar.address, transport, "wrong").run()
        served = registrar.wait()
    result.assert_failed(calls=1)
    assert result.successful == 0
    assert result.count("403", "Recv") == 1, result.describe()
    assert result.failure_reasons == {"FailedTestDoesntMatch": 1}, result.describe()
    assert "REGISTER of trunk1 refused with 403" in result.describe()
    # The carrier fails the call too: a run of it reports wrong credentials.
    served.assert_failed(calls=1)
    assert served.count("403", "Sent") == 1, served.describe()
    assert "credentials valid=false" in served.scenario_log


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_options_keepalives_answered(tmp_path: Path, transport: Transport) -> None:
    with Sipp("carrier_options_uas", tmp_path, transport=transport, calls=3, timeout=8) as server:
        result = Sipp(
            "options_uac", tmp_path, remote=server.address, transport=transport, calls=3, rate=50, timeout=8
        ).run()
        served = server.wait()
    result.assert_success(calls=3)
    served.assert_success(calls=3)
    assert result.count("200", "Recv") == 3
    assert result.response_time() < 1.0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_423_interval_too_brief_then_min_expires(tmp_path: Path, transport: Transport) -> None:
    with carrier(tmp_path, transport, calls=2, scenario="carrier_registrar_423_uas") as registrar:
        result = agent(tmp_path, registrar.address, transport, "s3cret", expires=60).run()
        served = registrar.wait()
    result.assert_success(calls=1)
    served.assert_success(calls=2)
    assert served.count("423", "Sent") == 1, served.describe()
    assert "REGISTER after 423 asks for 120 s" in served.scenario_log
    assert "trunk1 registered for 120 s" in result.scenario_log


def test_client_gives_up_on_a_carrier_that_challenges_forever(tmp_path: Path) -> None:
    with Sipp("carrier_challenge_forever_uas", tmp_path, calls=1, recv_timeout=1, timeout=8) as registrar:
        result = agent(tmp_path, registrar.address, "u1", "s3cret").run()
        # The carrier's call ends once no REGISTER follows its last challenge (recv_timeout).
        served = registrar.wait()
    result.assert_failed(calls=1)
    # The first REGISTER, its answer, then three retries: the fourth repeated challenge ends it.
    assert result.count("REGISTER", "Sent") == 5, result.describe()
    assert "gave up after" in result.describe()
    served.assert_success(calls=1)
    assert served.count("401", "Sent") == 5, served.describe()


def test_carrier_registrar_also_answers_options(tmp_path: Path) -> None:
    with carrier(tmp_path, "u1", calls=1) as registrar:
        Sipp("options_uac", tmp_path, remote=registrar.address, calls=1).run().assert_success(calls=1)
        registrar.wait().assert_success(calls=1)


def test_benchmark_registrations_of_many_users(tmp_path: Path) -> None:
    users = [(f"agent{n}", f"pw{n}") for n in range(5)]
    with Sipp(
        "carrier_registrar_uas", tmp_path, injection=[list(user) for user in users], calls=10, timeout=8
    ) as registrar:
        # Both sides take the users in turn (SEQUENTIAL); one call at a time (limit=1) keeps
        # them in step, so the carrier checks each registration against that user's password.
        result = Sipp(
            "register_bench_uac",
            tmp_path,
            remote=registrar.address,
            injection=[register_row(user, password, "carrier.test", 600) for user, password in users],
            calls=10,
            rate=100,
            limit=1,
            auth_uri="carrier.test",
            trace_messages=False,
            timeout=8,
        ).run()
        served = registrar.wait()
    result.assert_success(calls=10)
    served.assert_success(calls=10)
    assert result.response_time() < 1.0
    assert not result.files.messages.exists()


async def test_async_api(tmp_path: Path) -> None:
    async with carrier(tmp_path, "u1", calls=2) as registrar:
        result = await agent(tmp_path, registrar.address, "u1", "s3cret").run_async()
        served = await registrar.wait_async()
    result.assert_success(calls=1)
    served.assert_success(calls=2)


def test_unanswered_client_ends_by_itself(tmp_path: Path) -> None:
    # Nobody listens there: the OPTIONS is retransmitted until recv_timeout fails the call.
    result = Sipp("options_uac", tmp_path, remote=f"127.0.0.1:{free_port()}", calls=1, recv_timeout=1).run()
    result.assert_failed(calls=1)
    assert result.elapsed < 5
    assert result.count("OPTIONS", "Retrans") >= 1


def test_idle_server_stops_on_demand(tmp_path: Path) -> None:
    server = Sipp("carrier_options_uas", tmp_path, transport="t1", timeout=30).start()
    assert server.port
    result = server.stop()
    assert result.elapsed < 5
    assert result.created == 0
    assert result.stopped
    assert not result.killed


def test_server_stopped_mid_call_reports_the_call_unfinished(tmp_path: Path) -> None:
    with (
        carrier(tmp_path, "u1", calls=1) as registrar,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        # A REGISTER nobody follows up: the carrier challenges it and waits for credentials.
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3)
        port = sock.getsockname()[1]
        register = (
            "REGISTER sip:carrier.test SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-harness-1\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:trunk1@carrier.test>;tag=harness\r\n"
            "To: <sip:trunk1@carrier.test>\r\n"
            "Call-ID: harness-unfinished\r\n"
            "CSeq: 1 REGISTER\r\n"
            f"Contact: <sip:trunk1@127.0.0.1:{port}>\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(register.encode(), ("127.0.0.1", registrar.port))
        assert sock.recv(4096).startswith(b"SIP/2.0 401 ")
        result = registrar.stop()
    # sipp itself exits with 0 and counts the call nowhere: the result must not read as success.
    assert result.returncode == 0
    assert result.unfinished == 1
    assert not result.ok
    assert "1 unfinished" in result.describe()


def test_server_that_outlives_its_timeout_reports_it(tmp_path: Path) -> None:
    with Sipp("carrier_options_uas", tmp_path, calls=1, timeout=1) as server:
        result = server.wait()
    assert result.timed_out
    assert not result.ok
    assert "timed out" in result.describe()


def test_tls_needs_a_tls_build(tmp_path: Path, sipp_build: SippBuild) -> None:
    if sipp_build.tls:
        assert Sipp("options_uac", tmp_path, remote="127.0.0.1:5061", transport="l1").transport == "l1"
    else:
        with pytest.raises(SippUnsupported, match="TLS"):
            Sipp("options_uac", tmp_path, remote="127.0.0.1:5061", transport="l1")


def test_only_loopback_peers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        Sipp("options_uac", tmp_path, remote="192.0.2.1:5060")


def test_credentials_sipp_cannot_carry_are_refused() -> None:
    assert authentication_field("alice", "s3cret") == "[authentication username=alice password=s3cret]"
    for password in ("with space", "semi;colon", "brack]et", ""):
        with pytest.raises(ValueError, match="password"):
            authentication_field("alice", password)
