"""Where packets land in the file (services/recorder/timeline.py), without a bus or a file."""

from __future__ import annotations

from services.recorder.timeline import LegTimeline

RATE = 8000


def _us(samples: int) -> int:
    return samples * 1_000_000 // RATE


def test_rtp_time_places_packets_and_a_loss_leaves_its_exact_length() -> None:
    timeline = LegTimeline()
    assert timeline.place(1, 1000, _us(800)) == 800  # anchored at its arrival
    assert timeline.place(1, 1160, _us(960)) == 960
    assert timeline.place(1, 1960, _us(1760) + 300) == 1760  # 4 packets lost, this one a bit late


def test_timestamps_unwrap_at_two_to_the_32() -> None:
    timeline = LegTimeline()
    start = 2**32 - 320
    positions = [timeline.place(5, (start + n * 160) % 2**32, _us(n * 160)) for n in range(6)]
    assert positions == [n * 160 for n in range(6)]


def test_out_of_order_packets_go_back_where_they_belong() -> None:
    timeline = LegTimeline()
    timeline.place(1, 0, 0)
    assert timeline.place(1, 480, _us(480)) == 480
    assert timeline.place(1, 160, _us(160) + 5_000) == 160
    assert timeline.place(1, 640, _us(640)) == 640


def test_a_new_ssrc_or_a_jump_reanchors_on_arrival_time() -> None:
    timeline = LegTimeline()
    timeline.place(1, 0, 0)
    assert timeline.place(2, 999_999, _us(16_000)) == 16_000  # new source
    # A hold during which the phone's RTP clock ran on: 30 s of arrival, 20 ms of timestamp.
    assert timeline.place(2, 999_999 + 160, _us(16_000 + 30 * RATE)) == 16_000 + 30 * RATE
    assert timeline.resyncs == 1


def test_a_fast_peer_clock_is_pulled_back_to_the_arrival_clock() -> None:
    # The peer's sample clock runs 0.5% fast: 160 timestamp units every 19.9 ms of arrival.
    timeline = LegTimeline()
    last = 0
    for n in range(60 * 50):  # a minute of packets
        arrival = n * 19_900
        last = timeline.place(1, n * 160, arrival)
        assert abs(last - arrival * RATE // 1_000_000) <= 0.08 * RATE  # never more than 80 ms apart
    assert timeline.drift_corrected > 0
    assert timeline.resyncs == 0


def test_a_late_anchor_packet_is_corrected_by_the_earliest_arrivals() -> None:
    timeline = LegTimeline()
    timeline.place(1, 0, 60_000)  # the first packet was held up 60 ms in the network
    for n in range(1, 400):
        position = timeline.place(1, n * 160, n * 20_000)
    assert position == 399 * 160  # after a window, packets sit on their true arrival times


def test_a_checkpointed_timeline_continues_identically() -> None:
    original = LegTimeline()
    for n in range(150):
        original.place(3, n * 160, n * 19_950)
    copy = LegTimeline.restore(original.state())
    for n in range(150, 400):
        assert copy.place(3, n * 160, n * 19_950) == original.place(3, n * 160, n * 19_950)
