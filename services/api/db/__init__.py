"""The api's database: SQLAlchemy 2 typed models, one module per aggregate, and the async engine.

Importing this package registers every table on :data:`Base.metadata` (what Alembic compares
against) and the outbox's mapper events.
"""

from services.api.db.agents import Agent
from services.api.db.base import Base
from services.api.db.calls import AgentPresenceRow, Call, Recording, StoredEvent, TrunkRegistrationRow
from services.api.db.engine import Database
from services.api.db.messages import Message
from services.api.db.outbox import KvDeletion
from services.api.db.retention import DataRetention
from services.api.db.tenants import ApiKey, Tenant
from services.api.db.trunks import Trunk, TurnCredential
from services.api.db.webhooks import WebhookDelivery, WebhookSubscription

__all__ = [
    "Agent",
    "AgentPresenceRow",
    "ApiKey",
    "Base",
    "Call",
    "DataRetention",
    "Database",
    "KvDeletion",
    "Message",
    "Recording",
    "StoredEvent",
    "Tenant",
    "Trunk",
    "TrunkRegistrationRow",
    "TurnCredential",
    "WebhookDelivery",
    "WebhookSubscription",
]
