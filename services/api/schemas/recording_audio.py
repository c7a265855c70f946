"""Responses of the recordings' audio: signed download links."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

#: ``wav``: the recording as the recorder wrote it; ``ogg``: its Opus copy, when there is one.
AudioFormat = Literal["wav", "ogg"]


class RecordingLinkOut(BaseModel):
    url: str = Field(description="Absolute URL of the audio; no API key needed until it expires")
    path: str = Field(description="The same without scheme and host (for a page served by this api)")
    format: AudioFormat
    expires_at: datetime


__all__ = ["AudioFormat", "RecordingLinkOut"]
