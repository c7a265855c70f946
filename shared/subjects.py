"""Every NATS subject, stream and KV bucket name: built here and nowhere else.

Subjects are nouns first, then scope, then verb (ARCHITECTURE.md, "The bus"). Ids placed into a
subject must be single tokens; :func:`token` refuses anything that would change the subject's shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from shared.events import (
    TOKEN_PATTERN,
    AgentPresence,
    CallEventEnvelope,
    EventEnvelope,
    MessageEventEnvelope,
    RecordingCompleted,
    RecordingCompressed,
    RecordingDeleted,
    RecordingFailed,
    RecordingStarted,
    TrunkRegistration,
)

_TOKEN = re.compile(TOKEN_PATTERN)

#: Queue group shared by all media workers for session allocation.
MEDIA_QUEUE = "media"
#: Queue group of the signaling instances for commands any one of them may carry out.
SIGNALING_QUEUE = "signaling"
#: Queue group of the recorders for commands any one of them may carry out.
RECORDER_QUEUE = "recorder"


def token(value: str) -> str:
    """Return ``value`` if it is safe as one subject token, else raise ``ValueError``."""
    if not _TOKEN.match(value):
        raise ValueError(f"not a valid subject token: {value!r}")
    return value


# --- events (JetStream) ---------------------------------------------------------------------------


def call_events(tenant_id: str = "*", call_id: str = "*") -> str:
    return f"calls.events.{_tok_or_wild(tenant_id)}.{_tok_or_wild(call_id)}"


def trunk_events(tenant_id: str = "*", trunk_id: str = "*") -> str:
    return f"trunks.events.{_tok_or_wild(tenant_id)}.{_tok_or_wild(trunk_id)}"


def agent_events(tenant_id: str = "*", agent_id: str = "*") -> str:
    return f"agents.events.{_tok_or_wild(tenant_id)}.{_tok_or_wild(agent_id)}"


def recording_events(tenant_id: str = "*", call_id: str = "*") -> str:
    return f"recordings.events.{_tok_or_wild(tenant_id)}.{_tok_or_wild(call_id)}"


def recording_audio(call_id: str = "*") -> str:
    return f"recordings.audio.{_tok_or_wild(call_id)}"


def message_events(tenant_id: str = "*", message_id: str = "*") -> str:
    return f"messages.events.{_tok_or_wild(tenant_id)}.{_tok_or_wild(message_id)}"


def pending_message(tenant_id: str = "*", agent_id: str = "*", message_id: str = "*") -> str:
    """A message waiting for an agent to register (one copy per agent it may go to)."""
    return f"messages.pending.{_tok_or_wild(tenant_id)}.{_tok_or_wild(agent_id)}.{_tok_or_wild(message_id)}"


def message_command(verb: str) -> str:
    """A command about text messages (``send``), served by any one signaling instance."""
    return f"messages.command.{token(verb)}"


def dead_letter(stream: str = "*", consumer: str = "*") -> str:
    """Where a message that cannot be handled goes, by the stream and consumer that gave up on it."""
    return f"deadletter.{_tok_or_wild(stream)}.{_tok_or_wild(consumer)}"


def event_subject(event: EventEnvelope) -> str:
    """The subject an event is published on, from its type and ids."""
    if isinstance(
        event,
        RecordingStarted | RecordingCompleted | RecordingCompressed | RecordingDeleted | RecordingFailed,
    ):
        return recording_events(event.tenant_id, event.call_id)
    if isinstance(event, CallEventEnvelope):
        return call_events(event.tenant_id, event.call_id)
    if isinstance(event, TrunkRegistration):
        return trunk_events(event.tenant_id, event.trunk_id)
    if isinstance(event, AgentPresence):
        return agent_events(event.tenant_id, event.agent_id)
    if isinstance(event, MessageEventEnvelope):
        return message_events(event.tenant_id, event.message_id)
    raise ValueError(f"no subject for event {type(event).__name__}")


# --- request/reply and core -----------------------------------------------------------------------


def media_session_create() -> str:
    return "media.session.create"


def media_session(worker_id: str, session_id: str, verb: str) -> str:
    return f"media.worker.{token(worker_id)}.session.{token(session_id)}.{token(verb)}"


def media_worker_sessions(worker_id: str) -> str:
    """Every session verb of one worker (``media.worker.<worker>.session.*.*``): what it subscribes to."""
    return f"media.worker.{token(worker_id)}.session.*.*"


def media_release(owner: str = "*") -> str:
    """A signaling instance's sessions released on every worker (``media.release.<owner>``)."""
    return f"media.release.{_tok_or_wild(owner)}"


def media_events(tenant_id: str = "*", call_id: str = "*") -> str:
    """What media workers report about a call's session (timeouts, DTMF, quality, closing)."""
    return f"media.events.{_tok_or_wild(tenant_id)}.{_tok_or_wild(call_id)}"


def recording_command(verb: str) -> str:
    """A command about stored recordings (``delete``), served by any one recorder."""
    return f"recordings.command.{token(verb)}"


def call_command(node: str, verb: str) -> str:
    return f"calls.command.{_tok_or_wild(node)}.{token(verb)}"


def heartbeat(service: str = "*", instance_id: str = "*") -> str:
    """Liveness and load of one service instance (media workers add capacity and sessions)."""
    return f"{_tok_or_wild(service)}.instance.{_tok_or_wild(instance_id)}.heartbeat"


def _tok_or_wild(value: str) -> str:
    return value if value in ("*", ">") else token(value)


# --- streams and buckets --------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream the services rely on; created idempotently at start-up."""

    name: str
    subjects: tuple[str, ...]
    max_age: timedelta
    #: Window in which a repeated ``Nats-Msg-Id`` is dropped by the server.
    duplicate_window: timedelta = timedelta(minutes=2)
    description: str = ""
    #: Readable by subject without a consumer ("direct get", batches of messages per request).
    allow_direct: bool = False


@dataclass(frozen=True)
class BucketSpec:
    name: str
    history: int = 1
    description: str = ""
    ttl: timedelta | None = None


CALL_EVENTS = StreamSpec("CALL_EVENTS", (call_events(),), timedelta(days=7), description="call lifecycle")
TRUNK_EVENTS = StreamSpec("TRUNK_EVENTS", (trunk_events(),), timedelta(days=7), description="trunk state")
AGENT_EVENTS = StreamSpec("AGENT_EVENTS", (agent_events(),), timedelta(days=7), description="presence")
RECORDING_EVENTS = StreamSpec(
    "RECORDING_EVENTS", (recording_events(),), timedelta(days=7), description="recordings"
)
#: Chunks stay until their recording is stored (the recorder purges the call's subject then): a
#: recorder that takes over a call without its predecessor's spool rebuilds the file from the start,
#: so the retention bounds the longest call that can survive that.
RECORDING_AUDIO = StreamSpec(
    "RECORDING_AUDIO",
    (recording_audio(),),
    timedelta(hours=6),
    duplicate_window=timedelta(minutes=1),
    description="audio chunks waiting for a recorder (short retention)",
    # Recorders read a call's chunks by direct get: a consumer per call costs the server on every
    # message stored, and creating hundreds at once queues in its API.
    allow_direct=True,
)
MESSAGE_EVENTS = StreamSpec(
    "MESSAGE_EVENTS", (message_events(),), timedelta(days=7), description="messages (SIP MESSAGE)"
)
#: Messages waiting for their agent to register. Signaling fails and removes them after
#: ECHODESK_SIGNALING_MESSAGE_PENDING_TTL_S (with a message.failed event); the stream's own age limit
#: is only the backstop behind that setting's largest value, so no message ever expires unannounced.
PENDING_MESSAGES = StreamSpec(
    "PENDING_MESSAGES",
    (pending_message(),),
    timedelta(days=31),
    description="messages waiting for an agent to register",
    allow_direct=True,
)
DEAD_LETTERS = StreamSpec(
    "DEAD_LETTERS", (dead_letter(),), timedelta(days=14), description="messages no handler could take"
)

STREAMS: tuple[StreamSpec, ...] = (
    CALL_EVENTS,
    TRUNK_EVENTS,
    AGENT_EVENTS,
    RECORDING_EVENTS,
    RECORDING_AUDIO,
    MESSAGE_EVENTS,
    PENDING_MESSAGES,
    DEAD_LETTERS,
)

TRUNKS_KV = BucketSpec("trunks", description="trunk configuration written by the api")
AGENTS_KV = BucketSpec("agents", description="agent credentials (HA1) written by the api")
TENANTS_KV = BucketSpec(
    "tenants", description="tenant policies written by the api: recording on/off, retention"
)
CALLS_KV = BucketSpec("calls", description="live call state, so a restarted signaling picks calls up")

#: Integrators' contact ids for customer numbers (shared.records.ContactLink), written by the api.
CONTACTS_KV = BucketSpec(
    "contacts", description="helpdesk contact ids of customer numbers, written by the api, read by signaling"
)

RECORDINGS_KV = BucketSpec(
    "recordings", description="recording leases: which recorder records each live call (shared/recording.py)"
)

#: Jobs that one recorder at a time runs on a schedule (retention): a lease and the last run per job.
RECORDER_JOBS_KV = BucketSpec(
    "recorder_jobs", description="scheduled recorder jobs: which recorder runs each, and when it last ran"
)

BUCKETS: tuple[BucketSpec, ...] = (
    TRUNKS_KV,
    AGENTS_KV,
    TENANTS_KV,
    CALLS_KV,
    CONTACTS_KV,
    RECORDINGS_KV,
    RECORDER_JOBS_KV,
)
