"""Settings from the environment, one class per service.

Settings shared by every service are read from ``ECHODESK_<NAME>`` (``ECHODESK_NATS_URL``); a
service's own from ``ECHODESK_<SERVICE>_<NAME>`` (``ECHODESK_SIGNALING_SIP_UDP_PORT``), so one
environment (the development supervisor's) configures the whole stack without clashes.

The default ports keep what users configured for the old Asterisk-gateway guide working (see
ARCHITECTURE.md, "Entry points and default ports"). Deployment manifests, tests and
``docs/configuration.md`` read the ports from these classes: there is one list of them, here.
"""

from __future__ import annotations

import socket
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


def _shared(default: Any, name: str, description: str) -> Any:
    """A setting every service reads from ``ECHODESK_<NAME>``, whatever its own prefix."""
    alias = AliasChoices(f"ECHODESK_{name.upper()}", name)
    if callable(default):
        return Field(default_factory=default, validation_alias=alias, description=description)
    return Field(default=default, validation_alias=alias, description=description)


def _own_config(service: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=f"ECHODESK_{service.upper()}_", extra="ignore", populate_by_name=True
    )


class CommonSettings(BaseSettings):
    """What every service reads: where the bus is, how to log, who this instance is."""

    model_config = SettingsConfigDict(env_prefix="ECHODESK_", extra="ignore", populate_by_name=True)
    service: ClassVar[str] = "echodesk"

    environment: Environment = _shared(
        Environment.DEVELOPMENT, "environment", "`production` switches logs to JSON"
    )
    log_level: str = _shared("INFO", "log_level", "DEBUG, INFO, WARNING or ERROR")
    log_json: bool | None = _shared(None, "log_json", "Force JSON (true) or console (false) logs")
    nats_url: str = _shared("nats://127.0.0.1:4222", "nats_url", "Where the NATS server (JetStream on) is")
    nats_replicas: int = _shared(
        1, "nats_replicas", "Copies of each stream and KV bucket in a NATS cluster (3 in production)"
    )
    nats_connect_timeout_s: float = _shared(
        60.0, "nats_connect_timeout_s", "How long a service waits for NATS at start-up before it gives up"
    )
    instance_id: str = _shared(
        lambda: socket.gethostname().split(".")[0],
        "instance_id",
        "This instance's name on the bus (heartbeats, media worker id); the host name by default",
    )
    data_dir: Path = _shared(Path("data"), "data_dir", "Where local state lives in development")
    heartbeat_interval_s: float = _shared(
        5.0, "heartbeat_interval_s", "Seconds between heartbeats; 3 missed ones mean the instance is gone"
    )
    drain_timeout_s: float = _shared(
        30.0, "drain_timeout_s", "On SIGTERM: how long to finish the work in hand before exiting"
    )
    health_host: str = _shared("0.0.0.0", "health_host", "Address of the health and metrics endpoint")
    max_deliver: int = _shared(
        5, "max_deliver", "Deliveries of a failing JetStream message before it is dead-lettered"
    )
    secret_key: str | None = _shared(
        None, "secret_key", "Key that seals trunk passwords at rest (database and NATS KV); keep it secret"
    )
    health_port: int = Field(0, description="Port of /healthz, /readyz and /metrics")

    @property
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
    model_config = _own_config("signaling")
    service: ClassVar[str] = "signaling"

    health_port: int = Field(9101, description="Port of /healthz, /readyz and /metrics")
    sip_host: str = Field("0.0.0.0", description="Address the SIP transports listen on")
    sip_udp_port: int = Field(5060, description="SIP over UDP (RFC 3261)")
    sip_tcp_port: int = Field(5060, description="SIP over TCP (RFC 3261)")
    sip_tls_port: int = Field(5061, description="SIP over TLS (RFC 3261)")
    sip_ws_port: int = Field(8088, description="SIP over WebSocket (RFC 7118), as Asterisk's http.conf")
    sip_wss_port: int = Field(8089, description="SIP over secure WebSocket, the old guide's `sip_port`")
    sip_ws_path: str = Field("/ws", description="HTTP path of the WebSocket endpoints")
    sip_public_host: str | None = Field(
        None, description="Address carriers and browsers are told to reach us at (never a pod IP)"
    )
    tls_cert_file: Path | None = Field(None, description="PEM certificate (chain) for SIP over TLS and WSS")
    tls_key_file: Path | None = Field(None, description="PEM private key of that certificate")
    sip_t1: float = Field(0.5, description="RFC 3261 T1: round-trip estimate, base of retransmissions (s)")
    sip_t2: float = Field(4.0, description="RFC 3261 T2: longest retransmit interval of non-INVITE (s)")
    sip_t4: float = Field(5.0, description="RFC 3261 T4: how long a message may stay in the network (s)")
    sip_min_expires: int = Field(60, description="Shorter registrations get 423 Interval Too Brief")
    sip_max_expires: int = Field(3600, description="Longer registrations are shortened to this")
    sip_default_expires: int = Field(600, description="Registration time when the agent names none")
    sip_max_message_bytes: int = Field(65535, description="Larger SIP messages are refused (513)")
    sip_idle_timeout_s: float = Field(3900.0, description="A silent SIP connection is closed after this")
    sip_max_connections: int = Field(10000, description="Open SIP connections this instance accepts")
    sip_max_connections_per_ip: int = Field(100, description="Open SIP connections from one address")
    sip_nonce_secret: str | None = Field(
        None, description="Digest nonce key shared by all signaling instances (random when unset)"
    )
    sip_nonce_lifetime_s: float = Field(300.0, description="Digest nonces older than this are stale")
    sip_digest_algorithms: str = Field(
        "SHA-256,MD5",
        description="Digest algorithms offered to agents, strongest first (RFC 8760); MD5 alone for "
        "clients that give up on the first challenge they cannot answer (sipp)",
    )
    sip_rate_per_source: float = Field(10.0, description="SIP requests per second one address may send")
    sip_burst_per_source: float = Field(40.0, description="Requests one address may send at once")
    sip_failures_to_ban: int = Field(5, description="Failed logins from one address before it is banned")
    sip_ban_s: float = Field(900.0, description="First ban of an address (repeat offenders get longer)")
    sip_trusted_networks: str = Field(
        "", description="Comma-separated CIDRs never rate-limited or banned (carriers, load balancers)"
    )
    session_expires_s: int = Field(
        1800,
        ge=0,
        description="Session interval asked of carriers (RFC 4028; at least 90 is asked); 0: none",
    )
    record_calls: bool = Field(
        True, description="Record calls with customers and between agents (not the echo and demo lines)"
    )
    tenant_max_concurrent_calls: int = Field(
        100, ge=0, description="Calls one tenant may have at once (the dial plan refuses more with 403)"
    )
    ring_timeout_s: float = Field(
        30.0, gt=0, le=600, description="How long agents ring for an inbound or internal call (s)"
    )
    agent_reconnect_grace_s: float = Field(
        30.0,
        ge=0,
        le=600,
        description=(
            "How long a call waits for an agent whose connection dropped to register again (same "
            "RFC 5626 instance) while its audio goes on; then it ends as agent_connection_lost (0: at once)"
        ),
    )
    keep_calls_on_stop: bool = Field(
        False,
        description=(
            "On SIGTERM, leave connected calls in KV calls for the next instance with the same "
            "ECHODESK_INSTANCE_ID (a restarted container, a StatefulSet pod) instead of ending them"
        ),
    )
    message_max_bytes: int = Field(
        4096,
        ge=64,
        le=60000,
        description="Largest SIP MESSAGE body accepted (RFC 3428 7: larger ones get 413)",
    )
    message_pending_ttl_s: float = Field(
        604800.0,
        gt=0,
        le=2592000,
        description=(
            "How long a message for an agent who is not registered waits for them (s); then it fails "
            "as expired (message.failed)"
        ),
    )
    message_answer_wait_s: float = Field(
        4.0,
        gt=0,
        le=30,
        description=(
            "How long a MESSAGE's sender waits for the recipient's answer before it gets 202 Accepted "
            "and the outcome follows as an event (RFC 3428 7)"
        ),
    )


class MediaSettings(CommonSettings):
    model_config = _own_config("media")
    service: ClassVar[str] = "media"

    health_port: int = Field(9102, description="Port of /healthz, /readyz and /metrics")
    webrtc_port: int = Field(7882, description="UDP port carrying the WebRTC legs of all this worker's calls")
    rtp_port_min: int = Field(10000, description="Lowest UDP port of RTP legs towards carriers")
    rtp_port_max: int = Field(20000, description="Highest UDP port of RTP legs towards carriers")
    public_address: str | None = Field(
        None, description="Address put in SDP and ICE candidates (the public one behind NAT)"
    )
    capacity: int = Field(500, description="Sessions this worker takes before it leaves the queue group")
    # Signaling ends a dead worker's calls after three missed beats: 1 s keeps that within 5 s.
    heartbeat_interval_s: float = Field(
        1.0, gt=0, description="Seconds between this worker's heartbeats; 3 missed ones end its calls"
    )
    bind_address: str = Field(
        "0.0.0.0", description="Address the WebRTC port and the RTP legs bind (all interfaces by default)"
    )
    media_timeout_s: float = Field(
        30.0, description="A leg that sends no RTP for this long (and is not on hold) is reported (s)"
    )
    quality_interval_s: float = Field(
        10.0,
        ge=0,
        description="How often each session's per-leg loss, jitter, RTT and MOS are reported (s); 0: never",
    )
    recording_backlog_chunks: int = Field(
        32768,
        description="Recording chunks (~3 KB each) held while NATS is unreachable; newer ones are dropped",
    )
    demo_words: str = Field(
        "Welcome to EchoDesk. Your call is working.",
        description="What the demo line (*44) says after its chime, spoken by espeak-ng when it is installed "
        "(made once, cached under the data directory); empty: the chime alone",
    )
    demo_voice: str = Field(
        "en-us", description="The espeak-ng voice of the demo line's words (`ka`: Georgian)"
    )


class RecorderSettings(CommonSettings):
    model_config = _own_config("recorder")
    service: ClassVar[str] = "recorder"

    health_port: int = Field(9103, description="Port of /healthz, /readyz and /metrics")
    recordings_dir: Path = Field(
        Path("data/recordings"),
        description="Local directory: recordings being written (`.spool/`, shared between recorders on one "
        "volume lets a successor resume instead of rebuilding) and, with local storage, the stored files",
    )
    capacity: int = Field(
        1000, description="Recordings this recorder writes at once before it claims no more"
    )
    lease_s: float = Field(
        10.0,
        description="A call's recording lease; renewed every third of it, taken over once it expires (s)",
    )
    checkpoint_interval_s: float = Field(
        5.0, description="How often a recording is synced to disk and its chunks acknowledged (s)"
    )
    end_mark_grace_s: float = Field(
        10.0,
        description="After call.ended, wait this long for the worker's end-of-audio mark, then close it",
    )
    abandon_after_s: float = Field(
        3600.0, description="A recording with no chunk and no end mark for this long is finished as is (s)"
    )
    storage: Literal["local", "s3"] = Field(
        "local", description="Where finished recordings go: `local` or `s3`"
    )
    s3_bucket: str = Field("recordings", description="S3 bucket (storage `s3`)")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint; AWS when unset")
    s3_region: str = Field("us-east-1", description="S3 region")
    s3_access_key_id: str | None = Field(None, description="S3 access key; the AWS default chain when unset")
    s3_secret_access_key: str | None = Field(None, description="S3 secret key; keep it secret")
    storage_retry_s: float = Field(
        60.0, description="How long storing a finished recording is retried before `recording.failed` (s)"
    )
    compressed_format: Literal["opus", "none"] = Field(
        "opus", description="A compressed copy made after the call: `opus` (Ogg) or `none`"
    )
    disk_retry_s: float = Field(
        30.0,
        gt=0,
        description="How long writes to a full or failing recordings disk are retried before the call is "
        "handed to another recorder with `recording.failed` naming the disk (s)",
    )
    retention_interval_s: float = Field(
        3600.0,
        gt=0,
        description="How often one of the recorders deletes recordings past their tenant's retention (s)",
    )


class ApiSettings(CommonSettings):
    model_config = _own_config("api")
    service: ClassVar[str] = "api"

    health_port: int = Field(0, description="Unused: the api serves health and metrics on its HTTP port")
    http_port: int = Field(8000, description="REST, web UI, live events, health and metrics")
    http_host: str = Field("0.0.0.0", description="Address the HTTP server listens on")
    database_url: str = Field(
        "sqlite+aiosqlite:///data/echodesk.db",
        description="SQLAlchemy URL (sqlite+aiosqlite or postgresql+asyncpg)",
    )
    public_sip_wss_url: str = Field(
        "wss://localhost:8089/ws",
        description="SIP over secure WebSocket URL browsers are given by webrtc-config (signaling's WSS)",
    )
    kv_retry_interval_s: float = Field(
        5.0, description="How often trunk and agent changes not yet in NATS KV are published again (s)"
    )
    turn_credential_ttl_s: int = Field(
        86400, description="Lifetime of TURN credentials made from a trunk's shared TURN secret (s)"
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="How long a webhook receiver has to answer (s)")
    webhook_max_attempts: int = Field(
        10, ge=1, description="Attempts at one webhook delivery before it is marked failed"
    )
    webhook_retry_base_s: float = Field(
        10.0, gt=0, description="Wait before the first webhook retry; each next one waits twice as long (s)"
    )
    webhook_retry_max_s: float = Field(3600.0, gt=0, description="Longest wait between webhook retries (s)")
    webhook_pause_after_failures: int = Field(
        20, ge=1, description="Failed attempts in a row after which a webhook subscription is paused"
    )
    webhook_concurrency: int = Field(32, ge=1, description="Webhook deliveries in flight at once")
    event_retention_days: int = Field(
        0,
        ge=0,
        le=36500,
        description="Days events (calls' timelines) are kept before the api deletes them; 0: forever. "
        "A tenant may choose its own (/v1/tenant/data-retention)",
    )
    webhook_delivery_retention_days: int = Field(
        30,
        ge=0,
        le=36500,
        description="Days finished webhook deliveries (the delivery log) are kept; 0: forever; "
        "a tenant may choose its own",
    )
    retention_interval_s: float = Field(
        3600.0, gt=0, description="How often events and deliveries past their retention are deleted (s)"
    )
    webhook_allow_private_targets: bool = Field(
        False,
        description="Let webhooks go to loopback, private, link-local and other non-public addresses "
        "(a helpdesk on the same private network); off, such URLs are refused when saved and when sent",
    )
    recordings_dir: Path = Field(
        Path("data/recordings"),
        description="The recorder's local recordings directory (its `ECHODESK_RECORDER_RECORDINGS_DIR`): "
        "downloads of recordings stored there are read from it, and only from it",
    )
    s3_bucket: str = Field("recordings", description="The recorder's S3 bucket, read for downloads")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint; AWS when unset")
    s3_region: str = Field("us-east-1", description="S3 region")
    s3_access_key_id: str | None = Field(
        None, description="S3 access key (read access is enough); the AWS default chain when unset"
    )
    s3_secret_access_key: str | None = Field(None, description="S3 secret key; keep it secret")
    recording_url_ttl_s: int = Field(
        300, ge=10, le=86400, description="Default lifetime of a signed recording download URL (s)"
    )
    live_max_connections: int = Field(
        1000, ge=1, description="Open live-event WebSockets this api instance serves at once"
    )
    web_bundle_dir: str = Field(
        "",
        description="Directory of the web UI's built scripts (`make web` builds them); empty: the "
        "api package's own web/dist",
    )


SERVICE_SETTINGS: dict[str, type[CommonSettings]] = {
    cls.service: cls for cls in (SignalingSettings, MediaSettings, RecorderSettings, ApiSettings)
}
