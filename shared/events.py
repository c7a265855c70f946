"""Typed events: the contract between the services and with the helpdesk's integrators.

Every event is one envelope (CloudEvents-like: ``id``, ``type``, ``version``, ``occurred_at``,
``source``, ``tenant_id``, ``call_id`` where it applies, a per-call ``sequence``) around typed
``data``. The union :data:`Event` is discriminated on ``type``; JSON Schemas for consumers are
generated from these models into ``docs/events/`` (``echodesk schemas``), never written by hand.

Call status words follow Twilio's status callbacks, which helpdesk integrators already know,
plus ``early-media``, ``held`` and ``transferred``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

#: A NATS subject token: ids are put into subjects, so they may not carry '.', '*', '>' or spaces.
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Token = Annotated[str, Field(pattern=TOKEN_PATTERN)]
E164 = Annotated[str, Field(pattern=r"^\+[1-9][0-9]{1,14}$", examples=["+995555123456"])]


class ContractModel(BaseModel):
    """Strict, immutable models: unknown fields from a producer are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


# --- vocabularies ---------------------------------------------------------------------------------


class CallStatus(StrEnum):
    QUEUED = "queued"
    INITIATED = "initiated"
    RINGING = "ringing"
    EARLY_MEDIA = "early-media"
    IN_PROGRESS = "in-progress"
    HELD = "held"
    TRANSFERRED = "transferred"
    COMPLETED = "completed"
    BUSY = "busy"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"


FINAL_CALL_STATUSES = frozenset(
    {CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.CANCELED}
)


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class Party(StrEnum):
    """Who did something to a call."""

    AGENT = "agent"
    CUSTOMER = "customer"
    SYSTEM = "system"
    API = "api"


class LegKind(StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"


class EndCause(StrEnum):
    """Why a call ended, in the words operations and the softphone use."""

    NORMAL_CLEARING = "normal_clearing"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    CANCELED = "canceled"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    CARRIER_AUTH_FAILED = "carrier_auth_failed"
    CARRIER_ERROR = "carrier_error"
    FORBIDDEN = "forbidden"
    DIALPLAN_REFUSED = "dialplan_refused"
    NO_COMMON_CODEC = "no_common_codec"
    MEDIA_TIMEOUT = "media_timeout"
    MEDIA_FAILURE = "media_failure"
    AGENT_CONNECTION_LOST = "agent_connection_lost"
    SESSION_TIMER_EXPIRED = "session_timer_expired"
    TRANSFERRED = "transferred"
    #: The transferring agent left and the transfer did not reach anyone.
    TRANSFER_FAILED = "transfer_failed"
    SYSTEM_SHUTDOWN = "system_shutdown"
    #: The signaling instance died while the call was being set up (a connected call is resumed).
    SIGNALING_RESTARTED = "signaling_restarted"
    INTERNAL_ERROR = "internal_error"


class TrunkState(StrEnum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"
    UNREGISTERED = "unregistered"


class PresenceState(StrEnum):
    REGISTERED = "registered"
    UNREGISTERED = "unregistered"


# --- event data -------------------------------------------------------------------------------


class CallParties(ContractModel):
    """Who is on the call; carried by ``call.created`` and repeated where consumers need it."""

    direction: Direction
    from_number: str = Field(description="Caller, E.164 where it is a phone number, else an extension")
    to_number: str = Field(description="Callee, E.164 where it is a phone number, else an extension")
    agent_id: Token | None = None
    trunk_id: Token | None = None
    parent_call_id: Token | None = Field(default=None, description="The call this one was transferred from")
    conversation_id: uuid.UUID | None = Field(
        default=None,
        description=(
            "The customer's conversation with the tenant (shared.conversations): the same for every "
            "call and message of one E.164 number in one tenant; None without a customer number"
        ),
    )


class CallCreatedData(CallParties):
    status: Literal[CallStatus.QUEUED, CallStatus.INITIATED] = CallStatus.INITIATED
    recorded: bool = False


class CallRingingData(ContractModel):
    status: Literal[CallStatus.RINGING] = CallStatus.RINGING
    sip_status: int = Field(ge=180, le=189, default=180)


class CallEarlyMediaData(ContractModel):
    status: Literal[CallStatus.EARLY_MEDIA] = CallStatus.EARLY_MEDIA
    sip_status: int = Field(ge=180, le=189, default=183)


class CallAnsweredData(ContractModel):
    status: Literal[CallStatus.IN_PROGRESS] = CallStatus.IN_PROGRESS
    answered_by: Token | None = Field(default=None, description="Agent who answered an inbound call")
    codec: str | None = None
    media_worker: str | None = None


class CallHeldData(ContractModel):
    status: Literal[CallStatus.HELD] = CallStatus.HELD
    held_by: Party


class CallResumedData(ContractModel):
    status: Literal[CallStatus.IN_PROGRESS] = CallStatus.IN_PROGRESS
    resumed_by: Party


class RecordingState(StrEnum):
    """Where a call's recording stands after a pause, resume or stop."""

    RECORDING = "recording"
    PAUSED = "paused"
    #: Stopped for the rest of the call (it cannot be resumed); what was recorded before is kept.
    STOPPED = "stopped"


class CallRecordingData(ContractModel):
    state: RecordingState
    changed_by: Party
    requested_by: str | None = Field(default=None, description="The API key or user who asked")


class TransferKind(StrEnum):
    BLIND = "blind"
    ATTENDED = "attended"


class CallTransferredData(ContractModel):
    """The call was handed over and the new party answered; the call (its ``call_id``, the customer's
    leg and its recording) goes on with them."""

    status: Literal[CallStatus.TRANSFERRED] = CallStatus.TRANSFERRED
    kind: TransferKind
    #: What the transferring party asked for: an extension, or a number as the dial plan normalized it.
    target: str
    new_call_id: Token | None = None
    transferred_by: Party = Party.AGENT
    #: The agent who transferred the call (the one whose leg sent REFER).
    from_agent_id: Token | None = None
    #: The agent who took the call (a transfer to an extension); None for a number.
    to_agent_id: Token | None = None


class CallTransferFailedData(ContractModel):
    """Nobody took a transfer: busy, declined, no answer, nobody registered, refused by the dial plan.
    The call goes on with the agent who asked (or ends, ``transfer_failed``, when they had left)."""

    kind: TransferKind
    target: str
    transferred_by: Party = Party.AGENT
    from_agent_id: Token | None = None
    #: The final status the new party (or the dial plan) gave, and its words.
    sip_status: int = Field(ge=300, le=699)
    reason: str = Field(max_length=200)


class CallDtmfData(ContractModel):
    digit: str = Field(pattern=r"^[0-9*#A-D]$")
    duration_ms: int = Field(ge=0, le=60000)
    leg: LegKind
    method: Literal["rfc4733", "sip-info", "api"]


class LegQuality(ContractModel):
    """Per-leg RTP/RTCP figures (RFC 3550 section 6.4 for jitter and loss)."""

    leg: LegKind
    codec: str
    packets_received: int = Field(ge=0)
    packets_lost: int = Field(ge=0)
    jitter_ms: float = Field(ge=0)
    rtt_ms: float | None = Field(default=None, ge=0)
    mos: float | None = Field(default=None, ge=1, le=5, description="E-model estimate (ITU-T G.107)")


class CallQualityData(ContractModel):
    legs: list[LegQuality]
    final: bool = False


class CallEndedData(ContractModel):
    """The final event of every call: what happened, in SIP terms and in words a person reads."""

    status: Literal[
        CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.CANCELED
    ]
    cause: EndCause
    ended_by: Party
    sip_status: int | None = Field(default=None, ge=100, le=699)
    sip_reason: str | None = None
    message: str = Field(description="Human explanation, e.g. 'Line busy'")
    answered_at: datetime | None = None
    duration_s: float = Field(ge=0, description="Seconds from creation to end")
    talk_time_s: float = Field(ge=0, default=0, description="Seconds from answer to end")
    quality: list[LegQuality] = Field(default_factory=list)


class TrunkRegistrationData(ContractModel):
    state: TrunkState
    registrar: str
    sip_status: int | None = Field(default=None, ge=100, le=699)
    reason: str | None = Field(default=None, description="Human reason for a failure")
    expires_s: int | None = Field(default=None, ge=0)
    retry_in_s: float | None = Field(default=None, ge=0)


class AgentPresenceData(ContractModel):
    state: PresenceState
    contacts: int = Field(ge=0, description="Registered contacts left for this agent")
    transport: Literal["udp", "tcp", "tls", "ws", "wss"] | None = None
    source: str | None = Field(default=None, description="host:port the registration came from")
    user_agent: str | None = None


class RecordingStartedData(ContractModel):
    recording_id: Token
    format: str
    channels: int = Field(ge=1, le=2)
    sample_rate: int = Field(gt=0)


class RecordingCompletedData(ContractModel):
    recording_id: Token
    location: str
    format: str
    channels: int = Field(ge=1, le=2)
    sample_rate: int = Field(gt=0)
    duration_s: float = Field(ge=0)
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    started_at: datetime | None = Field(default=None, description="When the first audio packet arrived")
    paused_s: float = Field(default=0, ge=0, description="Seconds paused (silence in the file, see metadata)")
    chunks_missing: int = Field(
        default=0,
        ge=0,
        description="Audio chunks never received (silence in the file); 0 for a whole recording",
    )


class RecordingCompressedData(ContractModel):
    recording_id: Token
    location: str
    format: str = Field(examples=["ogg/opus"])
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class RecordingDeletedData(ContractModel):
    recording_id: Token
    locations: list[str] = Field(description="What was removed: the recording, its metadata, its copies")
    reason: str


class RecordingFailedData(ContractModel):
    recording_id: Token
    reason: str


# --- envelope ---------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


class EventEnvelope(ContractModel):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Unique; also the Nats-Msg-Id")
    version: int = 1
    occurred_at: datetime = Field(default_factory=_now)
    source: str = Field(default="echodesk", description="Service instance that emitted the event")
    tenant_id: Token


class CallEventEnvelope(EventEnvelope):
    call_id: Token
    sequence: int = Field(ge=0, description="Per-call order; consumers sort and de-duplicate by it")
    contact_id: str | None = Field(
        default=None,
        max_length=128,
        description="The helpdesk's contact id linked to the customer's number (PUT /v1/contacts/{number})",
    )


class CallCreated(CallEventEnvelope):
    """A call exists: an agent dialed, a carrier's INVITE arrived, or the api originated one."""

    type: Literal["call.created"] = "call.created"
    data: CallCreatedData


class CallRinging(CallEventEnvelope):
    """The far end is ringing (SIP 180)."""

    type: Literal["call.ringing"] = "call.ringing"
    data: CallRingingData = Field(default_factory=CallRingingData)


class CallEarlyMedia(CallEventEnvelope):
    """The far end sends audio before answering (SIP 183 with SDP: tones, announcements)."""

    type: Literal["call.early_media"] = "call.early_media"
    data: CallEarlyMediaData = Field(default_factory=CallEarlyMediaData)


class CallAnswered(CallEventEnvelope):
    """The call is answered and audio flows both ways."""

    type: Literal["call.answered"] = "call.answered"
    data: CallAnsweredData = Field(default_factory=CallAnsweredData)


class CallHeld(CallEventEnvelope):
    """One side put the call on hold (re-INVITE with sendonly or inactive)."""

    type: Literal["call.held"] = "call.held"
    data: CallHeldData


class CallResumed(CallEventEnvelope):
    """The call came off hold."""

    type: Literal["call.resumed"] = "call.resumed"
    data: CallResumedData


class CallRecordingChanged(CallEventEnvelope):
    """The call's recording was paused (a customer reads a card number), resumed or stopped; the
    paused span is silence in the file and listed in its metadata."""

    type: Literal["call.recording"] = "call.recording"
    data: CallRecordingData


class CallTransferred(CallEventEnvelope):
    """The call was transferred, blind (REFER) or attended (REFER with Replaces)."""

    type: Literal["call.transferred"] = "call.transferred"
    data: CallTransferredData


class CallTransferFailed(CallEventEnvelope):
    """A transfer was asked and did not happen (the call's timeline says why)."""

    type: Literal["call.transfer_failed"] = "call.transfer_failed"
    data: CallTransferFailedData


class CallDtmf(CallEventEnvelope):
    """A DTMF digit was received on one leg."""

    type: Literal["call.dtmf"] = "call.dtmf"
    data: CallDtmfData


class CallQuality(CallEventEnvelope):
    """Periodic and final per-leg audio quality (loss, jitter, RTT, MOS)."""

    type: Literal["call.quality"] = "call.quality"
    data: CallQualityData


class CallEnded(CallEventEnvelope):
    """The final event of every call: how it ended, in SIP terms and in words a person reads."""

    type: Literal["call.ended"] = "call.ended"
    data: CallEndedData


class TrunkRegistration(EventEnvelope):
    """A trunk's registration with its carrier changed state."""

    type: Literal["trunk.registration"] = "trunk.registration"
    trunk_id: Token
    data: TrunkRegistrationData


class AgentPresence(EventEnvelope):
    """An agent registered (a softphone or desk phone came online) or is gone."""

    type: Literal["agent.presence"] = "agent.presence"
    agent_id: Token
    data: AgentPresenceData


class RecordingStarted(CallEventEnvelope):
    """A recorder began writing a call's audio."""

    type: Literal["recording.started"] = "recording.started"
    data: RecordingStartedData


class RecordingCompleted(CallEventEnvelope):
    """A call's recording is stored: where, how long, how big, and its checksum."""

    type: Literal["recording.completed"] = "recording.completed"
    data: RecordingCompletedData


class RecordingCompressed(CallEventEnvelope):
    """A compressed copy of a completed recording is stored too (made after the call)."""

    type: Literal["recording.compressed"] = "recording.compressed"
    data: RecordingCompressedData


class RecordingDeleted(CallEventEnvelope):
    """A stored recording was deleted on request; the reason says whose and why."""

    type: Literal["recording.deleted"] = "recording.deleted"
    data: RecordingDeletedData


class RecordingFailed(CallEventEnvelope):
    """A call's recording could not be made or stored; the reason says why."""

    type: Literal["recording.failed"] = "recording.failed"
    data: RecordingFailedData


# --- messages (RFC 3428 SIP MESSAGE) ------------------------------------------------------------


class MessageFailure(StrEnum):
    """Why a message was not delivered."""

    #: The recipient's phone or the carrier answered with a final failure (sip_status says which).
    REJECTED = "rejected"
    #: The agent did not register within the pending time (ECHODESK_SIGNALING_MESSAGE_PENDING_TTL_S).
    EXPIRED = "expired"
    #: The dial plan or the trunk's rules refused the destination.
    NO_ROUTE = "no_route"
    #: The carrier challenged and the trunk's credentials were refused (or there are none).
    CARRIER_AUTH_FAILED = "carrier_auth_failed"
    #: The carrier could not be reached or did not answer.
    CARRIER_ERROR = "carrier_error"
    #: It had to wait for the agent and could not be stored (NATS unavailable).
    NOT_QUEUED = "not_queued"


class MessageContent(ContractModel):
    """What was said and between whom: carried by ``message.received`` and ``message.sent``."""

    direction: Direction
    from_number: str = Field(description="Sender: E.164 for a customer, the extension for an agent")
    to_number: str = Field(description="Recipient: E.164 for a customer, the extension for an agent")
    from_agent_id: Token | None = None
    to_agent_id: Token | None = None
    trunk_id: Token | None = None
    content_type: Literal["text/plain", "message/cpim"] = "text/plain"
    text: str = Field(description="The message, decoded from UTF-8 (for message/cpim: its text/plain part)")
    size_bytes: int = Field(ge=0, description="Size of the SIP body as received")


class MessageDeliveredData(ContractModel):
    sip_status: int = Field(ge=200, le=299, description="The recipient's (or carrier's) final answer")
    waited_s: float = Field(ge=0, description="Seconds from acceptance to delivery")
    #: True when it waited for the agent to register (delivered on their REGISTER).
    queued: bool = False


class MessageFailedData(ContractModel):
    cause: MessageFailure
    sip_status: int | None = Field(default=None, ge=300, le=699)
    reason: str = Field(max_length=200, description="Human explanation")
    waited_s: float = Field(ge=0, description="Seconds from acceptance to the failure")


class MessageEventEnvelope(EventEnvelope):
    message_id: Token
    agent_id: Token | None = Field(
        default=None,
        description=(
            "The agent on the helpdesk's side: the sender of an outbound or internal message, the "
            "agent who got an inbound one (None until one did)"
        ),
    )
    customer_number: E164 | None = Field(default=None, description="The customer's number, if one takes part")
    conversation_id: uuid.UUID | None = Field(
        default=None, description="Same as the customer's calls' conversation_id (shared.conversations)"
    )
    contact_id: str | None = Field(
        default=None,
        max_length=128,
        description="The helpdesk's contact id linked to the customer's number (PUT /v1/contacts/{number})",
    )


class MessageReceived(MessageEventEnvelope):
    """A customer's message arrived from a carrier and was accepted for the tenant's agents."""

    type: Literal["message.received"] = "message.received"
    data: MessageContent


class MessageSent(MessageEventEnvelope):
    """An agent sent a message (to a colleague's extension or a customer's number); it was accepted."""

    type: Literal["message.sent"] = "message.sent"
    data: MessageContent


class MessageDelivered(MessageEventEnvelope):
    """The recipient's phone (or the customer's carrier) accepted the message."""

    type: Literal["message.delivered"] = "message.delivered"
    data: MessageDeliveredData


class MessageFailed(MessageEventEnvelope):
    """The message could not be delivered; every accepted message ends delivered or failed."""

    type: Literal["message.failed"] = "message.failed"
    data: MessageFailedData


MessageEvent = MessageReceived | MessageSent | MessageDelivered | MessageFailed

CallEvent = (
    CallCreated
    | CallRinging
    | CallEarlyMedia
    | CallAnswered
    | CallHeld
    | CallResumed
    | CallRecordingChanged
    | CallTransferred
    | CallTransferFailed
    | CallDtmf
    | CallQuality
    | CallEnded
)
RecordingEvent = (
    RecordingStarted | RecordingCompleted | RecordingCompressed | RecordingDeleted | RecordingFailed
)

Event = Annotated[
    CallEvent | TrunkRegistration | AgentPresence | RecordingEvent | MessageEvent,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

#: Every event class by its ``type``; the schema generator and the docs walk this.
EVENT_TYPES: dict[str, type[EventEnvelope]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        CallCreated,
        CallRinging,
        CallEarlyMedia,
        CallAnswered,
        CallHeld,
        CallResumed,
        CallRecordingChanged,
        CallTransferred,
        CallTransferFailed,
        CallDtmf,
        CallQuality,
        CallEnded,
        TrunkRegistration,
        AgentPresence,
        RecordingStarted,
        RecordingCompleted,
        RecordingCompressed,
        RecordingDeleted,
        RecordingFailed,
        MessageReceived,
        MessageSent,
        MessageDelivered,
        MessageFailed,
    )
}


def parse_event(payload: bytes | str) -> Event:
    """Validate a serialized event; raises :class:`pydantic.ValidationError` when it is not one."""
    return EVENT_ADAPTER.validate_json(payload)


def event_schema() -> dict[str, Any]:
    """The JSON Schema of the whole union (what a consumer validates any event against)."""
    return EVENT_ADAPTER.json_schema(mode="serialization")
