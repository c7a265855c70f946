"""Entry point of the api service."""

from __future__ import annotations

from services.api.service import ApiService
from shared.service import run
from shared.settings import ApiSettings


def main() -> None:
    settings = ApiSettings()
    run(ApiService(settings), settings)
