"""A listening-quality estimate from what a leg measured: the E-model (ITU-T G.107) reduced to loss
and delay, with G.711's impairment figures (ITU-T G.113 appendix I: Ie 0, Bpl 25.1 with packet loss
concealment) and every other input at its G.107 default (which gives R = 93.2 on a perfect line)."""

from __future__ import annotations

from typing import Final

_R_DEFAULT: Final = 93.2
_BPL_G711: Final = 25.1


def mos_estimate(loss_fraction: float, one_way_delay_ms: float) -> float:
    """MOS-CQE (G.107 annex B) for G.711 with random loss ``loss_fraction`` (0-1) and mouth-to-ear
    delay ``one_way_delay_ms``."""
    loss = 100.0 * min(max(loss_fraction, 0.0), 1.0)
    # G.107 section 7.4: Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl), BurstR 1 for random loss.
    impairment_loss = 95.0 * loss / (loss + _BPL_G711)
    delay = max(one_way_delay_ms, 0.0)
    # The usual simplification of Id (Cole and Rosenbluth): 0.024 Ta, plus 0.11 (Ta - 177.3) beyond 177.3 ms.
    impairment_delay = 0.024 * delay + (0.11 * (delay - 177.3) if delay > 177.3 else 0.0)
    rating = _R_DEFAULT - impairment_loss - impairment_delay
    if rating <= 0:
        return 1.0
    if rating >= 100:
        return 4.5
    mos = 1 + 0.035 * rating + rating * (rating - 60) * (100 - rating) * 7e-6
    return round(min(4.5, max(1.0, mos)), 2)


__all__ = ["mos_estimate"]
