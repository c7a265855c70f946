"""Settings from the environment, one class per service, all under the ``ECHODESK_`` prefix.

The default ports keep what users configured for the old Asterisk-gateway guide working (see
ARCHITECTURE.md, "Entry points and default ports"). Deployment manifests and tests read the ports
from these classes, so there is one list of them, here.
"""

from __future__ import annotations

import socket
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from pydantic import AliasChoices, Field, computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


def _common(default: Any, name: str, **kwargs: Any) -> Any:
    """A setting shared by all services: read from ``ECHODESK_<NAME>`` whatever the service."""
    env = f"ECHODESK_{name.upper()}"
    if callable(default):
        return Field(default_factory=default, validation_alias=AliasChoices(env, name), **kwargs)
    return Field(default=default, validation_alias=AliasChoices(env, name), **kwargs)


class CommonSettings(BaseSettings):
    """What every service reads: where the bus is, how to log, who this instance is.

    Settings of one service are read from ``ECHODESK_<SERVICE>_<NAME>`` (``ECHODESK_SIGNALING_SIP_UDP_PORT``),
    so one environment can hold all services' settings (the development supervisor's) without clashes;
    the shared ones from ``ECHODESK_<NAME>`` (``ECHODESK_NATS_URL``).
    """

    model_config = SettingsConfigDict(env_prefix="ECHODESK_", extra="ignore", populate_by_name=True)

    #: Name of the service; each subclass fixes it.
    service: ClassVar[str] = "echodesk"

    environment: Environment = _common(Environment.DEVELOPMENT, "environment")
    log_level: str = _common("INFO", "log_level")
    #: Force JSON logs (production) or console logs (development); default follows ``environment``.
    log_json: bool | None = _common(None, "log_json")
    nats_url: str = _common("nats://127.0.0.1:4222", "nats_url")
    #: How long a service keeps trying to reach NATS at start-up before it gives up.
    nats_connect_timeout_s: float = _common(60.0, "nats_connect_timeout_s")
    #: Identity of this instance on the bus (heartbeats, queue groups, media worker ids).
    instance_id: str = _common(lambda: socket.gethostname().split(".")[0], "instance_id")
    data_dir: Path = _common(Path("data"), "data_dir")
    heartbeat_interval_s: float = _common(5.0, "heartbeat_interval_s")
    #: On SIGTERM a service stops taking work and gets this long to finish what it has.
    drain_timeout_s: float = _common(30.0, "drain_timeout_s")
    health_host: str = _common("0.0.0.0", "health_host")
    #: Port of the health/readiness/metrics endpoint; 0 where the service serves them itself.
    health_port: int = 0
    #: Times a JetStream message is delivered before it goes to the dead-letter stream.
    max_deliver: int = _common(5, "max_deliver")

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def json_logs(self) -> bool:
        if self.log_json is not None:
            return self.log_json
        return self.environment is Environment.PRODUCTION

    @classmethod
    def env_name(cls, setting: str) -> str:
        """The environment variable that sets one of this service's own settings."""
        return f"{cls.model_config.get('env_prefix', 'ECHODESK_')}{setting}".upper()

    @classmethod
    def port_settings(cls) -> dict[str, int]:
        """Every port this service listens on by default, keyed by its setting's name."""
        return {
            name: int(field.default)
            for name, field in cls.model_fields.items()
            if name.endswith("_port") and isinstance(field.default, int) and field.default
        }


class SignalingSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ECHODESK_SIGNALING_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "signaling"

    health_port: int = 9101
    sip_host: str = "0.0.0.0"
    sip_udp_port: int = 5060
    sip_tcp_port: int = 5060
    sip_tls_port: int = 5061
    sip_ws_port: int = 8088
    sip_wss_port: int = 8089
    sip_ws_path: str = "/ws"
    #: The address carriers and browsers are told to reach us at (never a pod IP: PEERS.md).
    sip_public_host: str | None = None


class MediaSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ECHODESK_MEDIA_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "media"

    health_port: int = 9102
    #: One UDP port carries the WebRTC legs of all this worker's calls (ICE-lite, ARCHITECTURE.md).
    webrtc_port: int = 7882
    rtp_port_min: int = 10000
    rtp_port_max: int = 20000
    public_address: str | None = None
    capacity: int = 500


class RecorderSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ECHODESK_RECORDER_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "recorder"

    health_port: int = 9103
    recordings_dir: Path = Path("data/recordings")


class ApiSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ECHODESK_API_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "api"

    #: REST, web UI, live events, and this service's health and metrics, all on one port.
    http_port: int = 8000
    http_host: str = "0.0.0.0"
    database_url: str = "sqlite+aiosqlite:///data/echodesk.db"


SERVICE_SETTINGS: dict[str, type[CommonSettings]] = {
    cls.service: cls for cls in (SignalingSettings, MediaSettings, RecorderSettings, ApiSettings)
}
