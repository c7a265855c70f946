"""Signed webhooks to the helpdesk: every event of a tenant, POSTed to its subscriptions.

Delivery is driven by durable JetStream consumers of its own (``api-webhooks-<stream>``), apart
from the call log's: a consumer turns each event into one ``webhook_deliveries`` row per matching
subscription (unique per subscription and event, so a redelivered event is not sent twice) and is
acked only once they are committed. A worker then POSTs due deliveries; the row is the outbox, so
an api restart, a NATS outage or a receiver that is down delays deliveries and loses none.

Every request carries ``EchoDesk-Timestamp`` (Unix seconds) and ``EchoDesk-Signature:
v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``; a receiver recomputes it and refuses old
timestamps, which stops replays. A 2xx is success; anything else (a redirect too) is retried with
exponential backoff, up to ``max_attempts``. A subscription whose attempts keep failing is paused
(``pause_after_failures`` in a row), says why, and keeps its pending deliveries for when it is
resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import httpx
from prometheus_client import Counter, Histogram
from sqlalchemy import Table, bindparam, func, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.db import Database, WebhookDelivery, WebhookSubscription
from services.api.db.base import new_id, utcnow
from services.api.db.upsert import insert_new_returning_ids
from services.api.db.webhooks import DeliveryStatus, SubscriptionStatus
from services.api.ingestion import EVENT_STREAMS, durable_name
from services.api.webhook_targets import Resolver, TargetRefused, check_url, system_resolver
from shared.bus import Bus, Delivery
from shared.events import Event
from shared.logging import get_logger
from shared.sealing import SealError, unseal
from shared.settings import ApiSettings

log = get_logger("echodesk.api.webhooks")

TIMESTAMP_HEADER = "EchoDesk-Timestamp"
SIGNATURE_HEADER = "EchoDesk-Signature"
SIGNATURE_VERSION = "v1"

ATTEMPTS = Counter("echodesk_api_webhook_attempts_total", "Webhook delivery attempts", ["outcome"])
LATENCY = Histogram(
    "echodesk_api_webhook_attempt_seconds",
    "Duration of webhook POSTs",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex>``: HMAC-SHA256 over the timestamp, a dot and the raw body."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={mac}"


def verify(
    secret: str, timestamp: str, signed: str, body: bytes, *, now: float, tolerance_s: float = 300
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        when = int(timestamp)
    except ValueError:
        return False
    if abs(now - when) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, when, body), signed)


@dataclass(frozen=True)
class WebhookPolicy:
    timeout_s: float = 10.0
    max_attempts: int = 10
    retry_base_s: float = 10.0
    retry_max_s: float = 3600.0
    pause_after_failures: int = 20
    concurrency: int = 32
    #: Deliveries to loopback, private, link-local ... addresses (services/api/webhook_targets.py).
    allow_private_targets: bool = False

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> WebhookPolicy:
        return cls(
            timeout_s=settings.webhook_timeout_s,
            max_attempts=settings.webhook_max_attempts,
            retry_base_s=settings.webhook_retry_base_s,
            retry_max_s=settings.webhook_retry_max_s,
            pause_after_failures=settings.webhook_pause_after_failures,
            concurrency=settings.webhook_concurrency,
            allow_private_targets=settings.webhook_allow_private_targets,
        )

    def retry_delay(self, failed_attempts: int) -> float:
        """Seconds before the next attempt: base, 2x base, 4x base ... up to ``retry_max_s``."""
        return float(min(self.retry_base_s * 2 ** max(0, failed_attempts - 1), self.retry_max_s))


@dataclass(frozen=True)
class _Claim:
    delivery_id: str
    subscription_id: str
    event_id: str
    event_type: str
    payload: str
    attempt: int
    url: str
    secret_sealed: str
    #: The subscription's failures in a row when this was claimed: a success resets them only
    #: when there were some (saving a write per delivery otherwise).
    failures: int


@dataclass(frozen=True)
class _Outcome:
    claim: _Claim
    status_code: int | None
    error: str | None
    duration_ms: float
    at: datetime


class WebhookDispatcher:
    def __init__(
        self,
        db: Database,
        secret_key: str | None,
        policy: WebhookPolicy | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.db = db
        self._resolver = resolver
        self.secret_key = secret_key
        self.policy = policy or WebhookPolicy()
        self._client = client or httpx.AsyncClient(follow_redirects=False)
        self._owns_client = client is None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._starved = False
        #: Finished attempts waiting to be written: one writer, one transaction for many (SQLite
        #: has one writer at a time, and many small concurrent transactions queue behind its lock).
        self._outcomes: list[_Outcome] = []
        self._outcomes_ready = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        #: The lease a claimed delivery gets: a worker that dies mid-POST leaves it due again after.
        self._lease = timedelta(seconds=self.policy.timeout_s + 30)

    async def start(self, bus: Bus, *, max_deliver: int = 5) -> None:
        for stream in EVENT_STREAMS:
            await bus.consume_event_batches(
                stream, durable_name("webhooks", stream), self.enqueue, max_deliver=max_deliver
            )
        self.start_worker()

    def start_worker(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="webhooks")
            self._writer = asyncio.create_task(self._write_outcomes(), name="webhook-outcomes")

    def kick(self) -> None:
        """Look for due deliveries now (a subscription was resumed, deliveries were queued)."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._sending):
            task.cancel()
        for task in list(self._sending):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if self._outcomes:  # what finished is written; an attempt cut short is made again after its lease
            with contextlib.suppress(Exception):
                await self._record_all(self._take_outcomes())
        if self._owns_client:
            await self._client.aclose()

    # --- from events to deliveries ---------------------------------------------------------

    async def enqueue(self, deliveries: Sequence[Delivery[Event]]) -> None:
        """One delivery per event and matching subscription (never two: the database's unique
        key), written before anything is sent. Deliveries of active subscriptions are claimed in
        the same transaction and sent at once, while there are free slots; the rest wait for the
        worker."""
        tenants = {d.value.tenant_id for d in deliveries}
        now = utcnow()
        free = self.policy.concurrency - len(self._sending)
        claims: dict[str, _Claim] = {}
        async with self.db.transaction() as session:
            subscriptions = (
                await session.execute(
                    select(
                        WebhookSubscription.id,
                        WebhookSubscription.tenant_id,
                        WebhookSubscription.event_types,
                        WebhookSubscription.url,
                        WebhookSubscription.secret_sealed,
                        WebhookSubscription.status,
                        WebhookSubscription.consecutive_failures,
                    ).where(WebhookSubscription.tenant_id.in_(tenants))
                )
            ).all()
            if not subscriptions:
                return
            rows = []
            for delivery in deliveries:
                event = delivery.value
                payload = event.model_dump_json()
                for sub in subscriptions:
                    if sub.tenant_id != event.tenant_id or (
                        sub.event_types and event.type not in sub.event_types
                    ):
                        continue
                    row_id = new_id("whd")
                    send_now = free > 0 and sub.status == SubscriptionStatus.ACTIVE.value
                    if send_now:
                        free -= 1
                        claims[row_id] = _Claim(
                            row_id,
                            sub.id,
                            str(event.id),
                            event.type,
                            payload,
                            1,
                            sub.url,
                            sub.secret_sealed,
                            sub.consecutive_failures,
                        )
                    rows.append(
                        {
                            "id": row_id,
                            "tenant_id": sub.tenant_id,
                            "subscription_id": sub.id,
                            "event_id": str(event.id),
                            "event_type": event.type,
                            "payload": payload,
                            "status": DeliveryStatus.PENDING.value,
                            "attempts": 1 if send_now else 0,
                            "next_attempt_at": now + self._lease if send_now else now,
                            "created_at": now,
                        }
                    )
            inserted = await insert_new_returning_ids(session, WebhookDelivery, rows)
        for row_id in inserted:
            if row_id in claims:
                self._send(claims[row_id])
        if len(inserted) > len(claims):
            self._wake.set()

    # --- the worker ------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                self._wake.clear()
                room = self.policy.concurrency - len(self._sending)
                claims = await self._claim(room) if room > 0 else []
                for claim in claims:
                    self._send(claim)
                if room <= 0 or len(claims) == room:
                    self._starved = True  # a finished attempt wakes us to claim more
                    wait = 1.0
                else:
                    self._starved = False
                    # Not below 50 ms: what is due but was not claimed is locked by another replica.
                    wait = max(0.05, await self._until_next_due())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again shortly
                log.warning("webhook worker failed, retrying", error=str(exc) or type(exc).__name__)
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    def _send(self, claim: _Claim) -> None:
        task = asyncio.create_task(self._attempt(claim))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if self._starved:
            self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook attempt crashed", error=repr(task.exception()))

    def _due(self) -> list[object]:
        return [
            WebhookDelivery.status == literal_column(f"'{DeliveryStatus.PENDING.value}'"),
            WebhookSubscription.status == SubscriptionStatus.ACTIVE.value,
        ]

    async def _until_next_due(self) -> float:
        async with self.db.transaction() as session:
            due = await session.scalar(
                select(func.min(WebhookDelivery.next_attempt_at))
                .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
                .where(*self._due())  # type: ignore[arg-type]
            )
        if due is None:
            return 1.0
        seconds: float = (due - utcnow()).total_seconds()
        return max(0.0, min(1.0, seconds))

    async def _claim(self, limit: int) -> list[_Claim]:
        now = utcnow()
        async with self.db.transaction() as session:
            rows = (
                await session.execute(
                    select(
                        WebhookDelivery.id,
                        WebhookDelivery.subscription_id,
                        WebhookDelivery.event_id,
                        WebhookDelivery.event_type,
                        WebhookDelivery.payload,
                        WebhookDelivery.attempts,
                        WebhookSubscription.url,
                        WebhookSubscription.secret_sealed,
                        WebhookSubscription.consecutive_failures,
                    )
                    .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
                    .where(*self._due(), WebhookDelivery.next_attempt_at <= now)  # type: ignore[arg-type]
                    .order_by(WebhookDelivery.next_attempt_at)
                    .limit(limit)
                    # Replicas of the api take different deliveries (PostgreSQL; SQLite has one writer).
                    .with_for_update(skip_locked=True, of=WebhookDelivery)
                )
            ).all()
            if not rows:
                return []
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_([r.id for r in rows]))
                .values(next_attempt_at=now + self._lease, attempts=WebhookDelivery.attempts + 1)
            )
        return [
            _Claim(
                r.id,
                r.subscription_id,
                r.event_id,
                r.event_type,
                r.payload,
                r.attempts + 1,
                r.url,
                r.secret_sealed,
                r.consecutive_failures,
            )
            for r in rows
        ]

    async def _attempt(self, claim: _Claim) -> None:
        body = claim.payload.encode()
        started = time.monotonic()
        status_code: int | None = None
        try:
            secret = unseal(claim.secret_sealed, self.secret_key or "")
            url, pinned, tls = await self._destination(claim.url)
            timestamp = int(time.time())
            response = await self._client.post(
                url,
                content=body,
                timeout=self.policy.timeout_s,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "EchoDesk-Webhooks/1",
                    TIMESTAMP_HEADER: str(timestamp),
                    SIGNATURE_HEADER: signature(secret, timestamp, body),
                    "EchoDesk-Event-Id": claim.event_id,
                    "EchoDesk-Event-Type": claim.event_type,
                    "EchoDesk-Delivery-Id": claim.delivery_id,
                    "EchoDesk-Attempt": str(claim.attempt),
                    **pinned,
                },
                extensions=tls,
            )
            status_code = response.status_code
            error = None if 200 <= status_code < 300 else f"the receiver answered HTTP {status_code}"
            if 300 <= status_code < 400:
                error = f"{error} (redirects are not followed)"
        except SealError:
            error = "the signing secret cannot be opened: ECHODESK_SECRET_KEY changed since it was stored"
        except TargetRefused as exc:
            error = f"not sent: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        duration_ms = (time.monotonic() - started) * 1000
        LATENCY.observe(duration_ms / 1000)
        ATTEMPTS.labels("delivered" if error is None else "failed").inc()
        self._outcomes.append(_Outcome(claim, status_code, error, duration_ms, utcnow()))
        self._outcomes_ready.set()

    async def _destination(self, url: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
        """Where to send: the URL as is when private targets are allowed; otherwise its host is
        resolved and checked now (a name may point elsewhere than when it was saved: DNS
        rebinding) and the request goes to the checked address itself, with the name in ``Host``
        (and in TLS SNI and certificate checks), so no second lookup can change it."""
        parsed = httpx.URL(url)
        if self.policy.allow_private_targets:
            return parsed, {}, {}
        target = await check_url(url, allow_private=False, resolver=self._resolver)
        pinned = parsed.copy_with(host=str(target.addresses[0]))
        tls = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
        return pinned, {"Host": parsed.netloc.decode("ascii")}, tls

    def _take_outcomes(self) -> list[_Outcome]:
        outcomes, self._outcomes = self._outcomes, []
        return outcomes

    async def _write_outcomes(self) -> None:
        while True:
            await self._outcomes_ready.wait()
            self._outcomes_ready.clear()
            outcomes = self._take_outcomes()
            if not outcomes:
                continue
            try:
                await self._record_all(outcomes)
            except Exception as exc:  # the database is away: keep them and try again
                log.warning("webhook outcomes not written, retrying", error=str(exc) or type(exc).__name__)
                self._outcomes[:0] = outcomes
                await asyncio.sleep(1.0)
                self._outcomes_ready.set()
                continue
            if any(o.error is not None for o in outcomes):
                self._wake.set()  # a retry may be due sooner than the worker planned

    async def _record_all(self, outcomes: list[_Outcome]) -> None:
        delivered = [o for o in outcomes if o.error is None]
        async with self.db.transaction() as session:
            if delivered:
                # One statement for every success (executemany), however many there are.
                table = cast(Table, WebhookDelivery.__table__)
                await session.execute(
                    update(table)
                    .where(table.c.id == bindparam("delivery_id"))
                    .values(
                        status=DeliveryStatus.DELIVERED.value,
                        delivered_at=bindparam("at"),
                        next_attempt_at=None,
                        last_attempt_at=bindparam("at"),
                        last_status_code=bindparam("code"),
                        last_error=None,
                        last_duration_ms=bindparam("ms"),
                    ),
                    [
                        {
                            "delivery_id": o.claim.delivery_id,
                            "at": o.at,
                            "code": o.status_code,
                            "ms": round(o.duration_ms, 3),
                        }
                        for o in delivered
                    ],
                )
                recovered = {o.claim.subscription_id for o in delivered if o.claim.failures}
                if recovered:
                    await session.execute(
                        update(WebhookSubscription)
                        .where(WebhookSubscription.id.in_(recovered))
                        .values(consecutive_failures=0)
                    )
            for outcome in outcomes:
                if outcome.error is not None:
                    await self._record_failure(session, outcome, outcome.error)

    async def _record_failure(self, session: AsyncSession, outcome: _Outcome, error: str) -> None:
        claim, now = outcome.claim, outcome.at
        final = claim.attempt >= self.policy.max_attempts
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == claim.delivery_id)
            .values(
                status=(DeliveryStatus.FAILED if final else DeliveryStatus.PENDING).value,
                next_attempt_at=None
                if final
                else now + timedelta(seconds=self.policy.retry_delay(claim.attempt)),
                last_attempt_at=now,
                last_status_code=outcome.status_code,
                last_error=error,
                last_duration_ms=round(outcome.duration_ms, 3),
            )
        )
        await self._count_failure(session, claim, error, now)

    async def _count_failure(self, session: AsyncSession, claim: _Claim, error: str, now: datetime) -> None:
        failures = await session.scalar(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == claim.subscription_id)
            .values(consecutive_failures=WebhookSubscription.consecutive_failures + 1)
            .returning(WebhookSubscription.consecutive_failures)
        )
        if failures is not None and failures >= self.policy.pause_after_failures:
            reason = (
                f"paused after {failures} failed delivery attempts in a row; the last one: {error}. "
                f"Deliveries wait; fix the receiver at {claim.url} and resume the subscription."
            )
            paused = await session.execute(
                update(WebhookSubscription)
                .where(
                    WebhookSubscription.id == claim.subscription_id,
                    WebhookSubscription.status == SubscriptionStatus.ACTIVE.value,
                )
                .values(status=SubscriptionStatus.PAUSED.value, paused_at=now, paused_reason=reason)
            )
            if paused.rowcount:  # type: ignore[attr-defined]
                log.warning("webhook subscription paused", subscription=claim.subscription_id, reason=reason)
