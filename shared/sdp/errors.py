"""SDP errors: every fault names its line, for the reason of a 488 or a 400 (RFC 3261 section 21.4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.sdp.codec import Codec

#: Long lines are cut in messages: a reason goes into a SIP Warning or reason phrase.
_MAX_QUOTED = 100


class SdpError(ValueError):
    """A session description that cannot be used, with the line and the fault.

    ``str(error)`` reads ``line 7: bad rtpmap 'a=rtpmap:xx' (want <payload type> <encoding>/<clock
    rate>[/<channels>])``; the parts are kept apart (:attr:`reason`, :attr:`detail`, :attr:`line`,
    :attr:`text`) for a 488 ``Warning: 399`` (RFC 3261 section 20.43) or a 400 reason phrase.
    """

    def __init__(
        self, reason: str, detail: str | None = None, *, line: int | None = None, text: str | None = None
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.line = line
        self.text = text
        message = reason
        if text is not None:
            quoted = text if len(text) <= _MAX_QUOTED else text[:_MAX_QUOTED] + "..."
            message += f" {quoted!r}"
        if detail:
            message += f" ({detail})"
        if line is not None:
            message = f"line {line}: {message}"
        super().__init__(message)

    def at(self, line: int, text: str) -> SdpError:
        """The same fault, located at a line of the description."""
        return SdpError(self.reason, self.detail, line=line, text=text)


class NoCommonCodec(SdpError):
    """No offered codec is one we accept (RFC 3264 section 6: reject the stream or answer 488)."""

    def __init__(self, offered: Sequence[Codec], accepted: Sequence[str]) -> None:
        self.offered = tuple(offered)
        self.accepted = tuple(accepted)
        names = ", ".join(str(codec) for codec in self.offered) or "none"
        super().__init__("no common codec", f"offered {names}; we accept {', '.join(accepted) or 'none'}")
