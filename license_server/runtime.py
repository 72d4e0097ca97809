"""What a running process holds: settings, the database, the signer, the clock. Built once, shared by all."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from license_server.auth.hashing import SecretHasher
from license_server.billing.state import BillingState
from license_server.billing.usage.writer import PostgresUsageWriter, SqliteUsageWriter, UsageWriter
from license_server.clock import Clock, utcnow
from license_server.config import Settings
from license_server.db.session import create_engine, create_session_factory
from license_server.deployments.activation_writer import SqliteActivationWriter
from license_server.deployments.runtime_state import DistinctFailureLimiter, PollState
from license_server.events.leases import new_lease_holder
from license_server.metrics import watch_pool
from license_server.replicas.invalidation import InvalidationBus, InvalidationListener, Topic
from license_server.replicas.limits import FailureCounter, SharedRequestLimit
from license_server.scheduling import JobHealth
from license_server.signing.encryption import WEBHOOK_SECRETS, SecretBox
from license_server.signing.keys import KeyStore, resolve_passphrase
from license_server.signing.service import RevocationWatch, Signer


def key_store(settings: Settings, *, clock: Clock = utcnow) -> KeyStore:
    passphrase = resolve_passphrase(
        settings.key_passphrase.get_secret_value() if settings.key_passphrase else None,
        settings.passphrase_path,
    )
    return KeyStore(settings.keys_dir, passphrase, allow_unencrypted=settings.allow_unencrypted_keys, clock=clock)


@dataclass
class Runtime:
    settings: Settings
    signer: Signer
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    clock: Clock = field(default=utcnow)
    # Who this process is when it takes job leases (the sweep): unique per process start.
    lease_holder: str = field(default_factory=new_lease_holder)
    poll_state: PollState = field(init=False)
    # Revocation lists imported by any replica reach this process within poll_cache_seconds.
    revocation_watch: RevocationWatch = field(init=False)
    # SQLite takes one writer at a time; writers in this process queue here (first come, first served) instead of
    # spinning in SQLite's busy handler, which sleeps and retries. PostgreSQL locks rows, so no gate is needed.
    write_gate: contextlib.AbstractAsyncContextManager[object] = field(init=False)
    # SQLite only: activations are written in batches by one thread with its own connection (group commit).
    activation_writer: SqliteActivationWriter | None = field(init=False, default=None)
    # Hosted billing: its usage writer (group commit on SQLite, row locks on PostgreSQL) and caches.
    billing: BillingState = field(init=False)
    # Failed runs in a row of this process's scheduled jobs; readiness reads it.
    job_health: JobHealth = field(init=False)
    # Writes anywhere drop what this process caches of them (replicas/invalidation.py); on PostgreSQL the listener
    # brings other replicas' and the CLI's writes.
    invalidations: InvalidationBus = field(init=False)
    invalidation_listener: InvalidationListener | None = field(init=False, default=None)
    _hasher: tuple[bytes, SecretHasher] | None = field(init=False, default=None, repr=False)
    _webhook_secret_box: tuple[bytes, SecretBox] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.job_health = JobHealth(unready_after=self.settings.job_failures_unready)
        watch_pool(self.engine.sync_engine.pool)
        self.write_gate = asyncio.Lock() if self.settings.is_sqlite else contextlib.nullcontext()
        if self.settings.is_sqlite:
            self.activation_writer = SqliteActivationWriter(
                self.settings.resolved_database_url, hasher=lambda: self.hasher, write_gate=self.write_gate
            )
        self.revocation_watch = RevocationWatch(
            self.signer, self.session_factory, interval=self.settings.poll_cache_seconds
        )
        self.invalidations = InvalidationBus()
        self.session_factory.configure(info=self.invalidations.session_info())
        self.poll_state = PollState(
            cache_seconds=self.settings.poll_cache_seconds,
            rate_limit_per_address=self.settings.rate_limit_per_address,
            rate_limit_per_license_key=self.settings.rate_limit_per_license_key,
            rate_limit_failed_auth_per_address=self.settings.rate_limit_failed_auth_per_address,
        )
        # Through ``self.poll_state`` at delivery time, so a poll state swapped in later (tests) is the one told.
        self.invalidations.subscribe(Topic.LICENSE, lambda key: self.poll_state.invalidated(Topic.LICENSE, key))
        self.invalidations.subscribe(Topic.ACTIVATIONS, lambda key: self.poll_state.invalidated(Topic.ACTIVATIONS, key))
        self.invalidations.on_reset(lambda: self.poll_state.forget_everything())
        failure_limit = self.settings.rate_limit_failed_auth_per_address
        self.poll_state.failed_auth_limiter = FailureCounter(
            DistinctFailureLimiter(failure_limit),
            limit=failure_limit,
            fingerprint=lambda secret: self.hasher.fingerprint(secret),
            engine=self.engine,
            bus=self.invalidations,
        )
        if not self.settings.is_sqlite:
            # N replicas behind one address enforce one limit, not N.
            self.poll_state.address_limiter = SharedRequestLimit(
                self.engine, self.settings.rate_limit_per_address, prefix="address"
            )
            self.poll_state.license_key_limiter = SharedRequestLimit(
                self.engine, self.settings.rate_limit_per_license_key, prefix="license-key"
            )
            self.invalidation_listener = InvalidationListener(self.settings.resolved_database_url, self.invalidations)
        usage_writer: UsageWriter = (
            SqliteUsageWriter(self.settings.resolved_database_url, write_gate=self.write_gate)
            if self.settings.is_sqlite
            else PostgresUsageWriter(self.session_factory)
        )
        self.billing = BillingState(
            session_factory=self.session_factory,
            clock=lambda: self.clock(),
            hasher=lambda: self.hasher,
            failed_auth_limiter=self.poll_state.failed_auth_limiter,
            write_gate=self.write_gate,
            writer=usage_writer,
            cache_seconds=self.settings.poll_cache_seconds,
        )
        self.billing.subscribe(self.invalidations)
        self.billing.announce = lambda topic, key: self.invalidations.announce(self.engine, topic, key)

    def start(self) -> None:
        """What runs beside the requests: the invalidation listener (PostgreSQL). Called by the app on startup."""
        if self.invalidation_listener is not None:
            self.invalidation_listener.start()

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock = utcnow) -> Runtime:
        """Load and check the keys first: a server with unusable keys must not start."""
        signer = Signer(key_store(settings, clock=clock), refresh_seconds=settings.keyring_refresh_seconds)
        signer.keyring()
        engine = create_engine(settings)
        return cls(
            settings=settings,
            signer=signer,
            engine=engine,
            session_factory=create_session_factory(engine),
            clock=clock,
        )

    @property
    def hasher(self) -> SecretHasher:
        key = self.signer.keyring().secret_hashing_key
        cached = self._hasher
        if cached is None or cached[0] != key:
            cached = self._hasher = (key, SecretHasher(key))
        return cached[1]

    @property
    def webhook_secret_box(self) -> SecretBox:
        """Seals and opens webhook signing secrets, under a key derived from the secret-hashing key."""
        key = self.signer.keyring().secret_hashing_key
        cached = self._webhook_secret_box
        if cached is None or cached[0] != key:
            cached = self._webhook_secret_box = (key, SecretBox(key, purpose=WEBHOOK_SECRETS))
        return cached[1]

    async def close(self) -> None:
        if self.invalidation_listener is not None:
            await self.invalidation_listener.stop()
        if self.activation_writer is not None:
            await asyncio.to_thread(self.activation_writer.close)
        await self.billing.writer.aclose()
        await self.engine.dispose()
