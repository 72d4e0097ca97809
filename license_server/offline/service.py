"""The vendor's side of air-gapped installs: answer activation requests, renew files, import usage reports.

An answer is an activation like an online one (``deployments.service.activate``: the same seat limits, events and
refusals), bound to the install's key, and a license file signed for that binding. Usage reports are imported
through ``deployments.service.report_usage``, so imported usage is stored and shown exactly as online usage is.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from license_server.auth.audit import record_audit
from license_server.clock import Clock, utcnow
from license_server.deployments import service as deployments
from license_server.deployments.jobs import write_check_ins
from license_server.deployments.models import Activation
from license_server.deployments.runtime_state import CheckIn
from license_server.deployments.usage import usage_summary
from license_server.errors import (
    Conflict,
    LicenseKeyNotFound,
    OfflineBindingConflict,
    OfflineFileRejected,
    ValidationFailed,
)
from license_server.licenses.documents import license_content
from license_server.licenses.models import License
from license_server.licenses.service import license_view
from license_server.licenses.usage import UsageSummary
from license_server.offline import files
from license_server.offline.files import FileError, FileReason
from license_server.offline.models import OfflineBinding, OfflineUsageImport
from license_server.replicas.invalidation import Topic, publish
from license_server.verifier import VerificationError, Verifier

if TYPE_CHECKING:
    from license_server.auth.tokens import Actor
    from license_server.runtime import Runtime

# HTTP status of each refusal that is not plain bad input.
_REFUSAL_STATUS = {
    FileReason.UNKNOWN_BINDING: 404,
    FileReason.USAGE_REPLAYED: 409,
    FileReason.USAGE_CHAIN_GAP: 409,
    FileReason.USAGE_CHAIN_BROKEN: 409,
}


def _rejected(error: FileError | VerificationError) -> OfflineFileRejected:
    if isinstance(error, VerificationError):
        return OfflineFileRejected(error.reason.value, error.detail, field="license_file")
    return OfflineFileRejected(
        error.reason.value, error.detail, field=error.field, status_code=_REFUSAL_STATUS.get(error.reason, 400)
    )


@dataclass(frozen=True)
class IssuedLicenseFile:
    text: str
    license_id: uuid.UUID
    activation_id: uuid.UUID
    created: bool  # a new activation (a seat) was taken for it
    expires_at: datetime  # the file's own ``exp``


async def _license_file(
    session: AsyncSession, *, runtime: Runtime, binding: OfflineBinding, now: datetime
) -> tuple[str, datetime]:
    """Sign a license file for the binding with the license's current terms, status and usage."""
    license = await session.scalar(
        select(License)
        .where(License.id == binding.license_id)
        .options(selectinload(License.customer), selectinload(License.plan))
        .execution_options(populate_existing=True)
    )
    assert license is not None  # the binding's foreign key cascades
    view = license_view(license, now)
    # Answering for an install is hearing from it: the status as of a check-in now (as a poll computes it).
    status = deployments.status_checked_in(view, now)
    content = license_content(
        license=view.license,
        customer=view.customer,
        plan=view.plan,
        terms=view.terms,
        status=status,
        issuer=runtime.settings.issuer,
        usage=await usage_summary(session, license.id),
    )
    issued_at = int(now.timestamp())
    # A file lives until the license's grace ends, and at least one document TTL so a fresh file always verifies.
    expires = max(
        int((license.expires_at + view.terms.grace).timestamp()),
        issued_at + int(runtime.settings.document_ttl.total_seconds()),
    )
    claims: dict[str, Any] = {
        **content,
        "jti": secrets.token_hex(16),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": expires,
        "binding": {
            "activation_id": str(binding.activation_id),
            "fingerprint": binding.fingerprint,
            "install_key": binding.install_key,
        },
    }
    token = runtime.signer.sign(claims)
    binding.files_issued += 1
    binding.last_file_at = now
    return files.armor(token, claims), datetime.fromtimestamp(expires, now.tzinfo)


async def respond(
    session: AsyncSession, *, runtime: Runtime, actor: Actor, request: str | bytes, clock: Clock = utcnow
) -> IssuedLicenseFile:
    """Answer an activation request with a license file bound to its fingerprint and install key.

    Asking again with the same request (or a new request from the same install key) returns a new file for the same
    activation: no second seat. The activation, the binding and the audit event are one transaction
    (``deployments.activate_with``): a failure anywhere leaves no seat taken and nothing bound.
    """
    now = clock()
    try:
        parsed = files.parse_activation_request(request, now=now)
    except FileError as exc:
        raise _rejected(exc) from exc
    license = await deployments.license_by_key(session, runtime, parsed.license_key)
    if license is None:
        raise LicenseKeyNotFound("no license matches the request's key", field="license_key")
    bound = await session.scalar(select(OfflineBinding).where(OfflineBinding.install_key == parsed.install_key))
    if bound is not None and (bound.license_id != license.id or bound.fingerprint != parsed.fingerprint):
        raise OfflineBindingConflict(
            "this install key is already bound to another license or fingerprint", field="install_key"
        )

    async def bind_and_sign(activation: Activation, created: bool) -> tuple[str, datetime]:
        """In the activation's transaction: the binding, the file and the audit event, or (raising) none of it."""
        current = await session.scalar(select(OfflineBinding).where(OfflineBinding.install_key == parsed.install_key))
        if current is not None and current.activation_id != activation.id:
            if current.license_id != license_id or current.fingerprint != parsed.fingerprint:
                raise OfflineBindingConflict(
                    "this install key is already current to another license or fingerprint", field="install_key"
                )
            # The install's activation was deactivated: it asks again, so it gets a new activation and a new chain.
            await session.delete(current)
            await session.flush()  # before the new binding's insert: the install key is unique
            current = None
        binding = current or await session.scalar(
            select(OfflineBinding).where(OfflineBinding.activation_id == activation.id)
        )
        if binding is not None and binding.install_key != parsed.install_key:
            raise OfflineBindingConflict(
                "this fingerprint's activation is current to another install key; deactivate it to bind a new install",
                field="install_key",
            )
        if binding is None:
            binding = OfflineBinding(
                activation_id=activation.id,
                license_id=activation.license_id,
                fingerprint=parsed.fingerprint,
                install_key=parsed.install_key,
                request_nonce=parsed.nonce,
                created_at=now,
                usage_head=files.genesis_hash(parsed.install_key),
            )
            session.add(binding)
        signed = await _license_file(session, runtime=runtime, binding=binding, now=now)
        await record_audit(
            session,
            actor=actor,
            action="offline.responded",
            target_type="license",
            target_id=activation.license_id,
            detail={
                "activation_id": str(activation.id),
                "fingerprint": parsed.fingerprint,
                "hostname": parsed.hostname,
                "nonce": parsed.nonce,
                "new_activation": created,
            },
            clock=clock,
        )
        return signed

    license_id = license.id
    try:
        # One transaction: the activation (a seat), the binding, the file's count and the audit event.
        result, (text, expires_at) = await deployments.activate_with(
            session,
            runtime=runtime,
            license_key=parsed.license_key,
            fingerprint=parsed.fingerprint,
            hostname=parsed.hostname,
            product_version=parsed.product_version,
            metadata={"offline": True},
            then=bind_and_sign,
            clock=clock,
        )
    except IntegrityError as exc:  # the same install was answered concurrently twice over: that answer stands
        raise Conflict("this request is being answered concurrently; try again") from exc
    activation = result.activation
    return IssuedLicenseFile(text, activation.license_id, activation.id, result.created, expires_at)


async def renew(
    session: AsyncSession, *, runtime: Runtime, actor: Actor, license_file: str | bytes, clock: Clock = utcnow
) -> IssuedLicenseFile:
    """A new file for the binding of an earlier one (which may have expired), with the license's current terms."""
    now = clock()
    verifier = Verifier(runtime.signer.keyring().root_public_key, clock=clock)
    try:
        previous = files.verify_license_file(license_file, verifier, check_dates=False)
    except VerificationError as exc:
        raise _rejected(exc) from exc
    binding = await session.scalar(
        select(OfflineBinding).where(OfflineBinding.install_key == previous.binding.install_key)
    )
    if binding is None or str(binding.activation_id) != previous.binding.activation_id:
        raise OfflineFileRejected(
            FileReason.UNKNOWN_BINDING.value, "no offline activation matches this file", status_code=404
        )
    activation = await session.get(Activation, binding.activation_id)
    if activation is None or activation.deactivated_at is not None:
        raise Conflict(
            "the file's activation was deactivated; answer a new activation request", code="activation_deactivated"
        )
    text, expires_at = await _license_file(session, runtime=runtime, binding=binding, now=now)
    await record_audit(
        session,
        actor=actor,
        action="offline.renewed",
        target_type="license",
        target_id=binding.license_id,
        detail={"activation_id": str(binding.activation_id), "files_issued": binding.files_issued},
        clock=clock,
    )
    await session.commit()
    return IssuedLicenseFile(text, binding.license_id, binding.activation_id, False, expires_at)


@dataclass(frozen=True)
class UsageImported:
    license_id: uuid.UUID
    activation_id: uuid.UUID
    seq: int
    measurements: int
    usage: UsageSummary
    over_limits: list[str]


async def import_usage(
    session: AsyncSession, *, runtime: Runtime, actor: Actor, report: str | bytes, clock: Clock = utcnow
) -> UsageImported:
    """Import the next link of an install's usage chain. The newest measurement becomes the activation's usage.

    One transaction — the chain's advance, the usage report, the install's check-in, the import's record and its
    audit event — whose commit is the last thing that can fail: an error answered means nothing was imported, so the
    same file can be sent again. A file already imported (byte for byte the same link) answers what its import
    answered, however often, concurrently or not.
    """
    now = clock()
    try:
        parsed = files.parse_usage_report(report)
    except FileError as exc:
        raise _rejected(exc) from exc
    binding = await session.scalar(select(OfflineBinding).where(OfflineBinding.install_key == parsed.install_key))
    if binding is None:
        raise _rejected(
            FileError(FileReason.UNKNOWN_BINDING, "no offline activation has this install key", "install_key")
        )
    if (parsed.activation_id, parsed.license_id, parsed.fingerprint) != (
        str(binding.activation_id),
        str(binding.license_id),
        binding.fingerprint,
    ):
        raise _rejected(FileError(FileReason.BINDING_MISMATCH, "the report names another activation", "activation_id"))
    if parsed.seq <= binding.usage_seq:  # the same file again answers its import again; another one is refused
        earlier = await _imported_before(session, binding.id, binding.license_id, binding.activation_id, parsed)
        if earlier is not None:
            return earlier
        raise _rejected(
            FileError(
                FileReason.USAGE_REPLAYED,
                f"another report with seq {parsed.seq} was already imported (imported up to {binding.usage_seq})",
                "seq",
            )
        )
    try:
        files.check_next_link(parsed, last_seq=binding.usage_seq, last_hash=binding.usage_head)
    except FileError as exc:
        raise _rejected(exc) from exc
    for index, measurement in enumerate(parsed.measurements):
        if measurement.measured_at > now + timedelta(minutes=5):
            raise ValidationFailed("measured in the future", field=f"measurements.{index}.measured_at")
        if len({wid for wid, _ in measurement.workspaces}) != len(measurement.workspaces):
            raise ValidationFailed("workspace ids must be unique", field=f"measurements.{index}.workspaces")
    activation = await session.get(Activation, binding.activation_id)
    if activation is None or activation.deactivated_at is not None:
        raise Conflict("the install's activation was deactivated", code="activation_deactivated")
    binding_id, license_id, activation_id = binding.id, binding.license_id, binding.activation_id
    last_seq = binding.usage_seq
    license = await session.get(License, license_id, options=[selectinload(License.plan)])
    assert license is not None  # the binding's foreign key cascades
    terms = license.effective_terms(license.plan)
    # The chain advances only from the state it was checked against: a concurrent import of the same link loses here
    # (on PostgreSQL it waits for the winner's commit), and then answers the winner's answer.
    advanced = await session.execute(
        update(OfflineBinding)
        .where(OfflineBinding.id == binding_id, OfflineBinding.usage_seq == last_seq)
        .values(usage_seq=parsed.seq, usage_head=parsed.hash, usage_imported_at=now)
        .execution_options(synchronize_session=False)
    )
    if not advanced.rowcount:  # type: ignore[attr-defined]
        return await _answer_of_concurrent_import(session, binding_id, license_id, activation_id, parsed)
    if parsed.measurements:
        newest = parsed.measurements[-1]
        stored = await deployments.store_usage_report(
            session,
            license=license,
            activation_id=activation_id,
            measured_at=newest.measured_at,
            workspaces=[deployments.WorkspaceUsage(wid, members) for wid, members in newest.workspaces],
            seats_used=newest.seats_used,
            idempotency_key=f"offline:{parsed.seq}",
            clock=clock,
        )
        if stored.duplicate:  # keyed by this activation and seq: only an earlier import of this very link stores it
            raise _rejected(FileError(FileReason.USAGE_REPLAYED, "this report was already imported", "seq"))
        usage, over = stored.usage, stored.over_limits
    else:
        usage = await usage_summary(session, license_id)
        over = usage.over_limits(terms)
    # A usage report is the install being heard from: the check-in an online poll records, written in this
    # transaction (the CLI's process has no flush job, and a check-in written afterwards could fail after the commit).
    await write_check_ins(
        await session.connection(),
        {activation_id: CheckIn(license_id, now, int(terms.heartbeat_window.total_seconds()))},
    )
    session.add(
        OfflineUsageImport(
            binding_id=binding_id,
            seq=parsed.seq,
            report_hash=parsed.hash,
            report_created_at=parsed.created_at,
            measurements=[m.to_json() for m in parsed.measurements],
            imported_at=now,
            imported_by=actor.name,
            answer={"usage": _usage_json(usage), "over_limit": over},
        )
    )
    await record_audit(
        session,
        actor=actor,
        action="offline.usage_imported",
        target_type="license",
        target_id=license_id,
        detail={"activation_id": str(activation_id), "seq": parsed.seq, "measurements": len(parsed.measurements)},
        clock=clock,
    )
    await publish(session, Topic.LICENSE, [str(license_id)])  # its usage: every replica's snapshot, at commit
    try:
        await session.commit()
    except IntegrityError:  # the same link imported concurrently (its import's unique seq): that import stands
        return await _answer_of_concurrent_import(session, binding_id, license_id, activation_id, parsed)
    runtime.poll_state.forget_license(license_id)  # in memory: cannot fail
    return UsageImported(license_id, activation_id, parsed.seq, len(parsed.measurements), usage, over)


def _usage_json(usage: UsageSummary) -> dict[str, Any]:
    return {
        "workspaces": usage.workspaces,
        "members_per_workspace": usage.members_per_workspace,
        "licensed_seats": usage.licensed_seats,
        "reported": usage.reported,
    }


async def _imported_before(
    session: AsyncSession,
    binding_id: uuid.UUID,
    license_id: uuid.UUID,
    activation_id: uuid.UUID,
    parsed: files.UsageReportFile,
) -> UsageImported | None:
    """What the import of this very link (same seq, same hash) answered; None if it was not imported."""
    earlier = await session.scalar(
        select(OfflineUsageImport).where(
            OfflineUsageImport.binding_id == binding_id, OfflineUsageImport.seq == parsed.seq
        )
    )
    if earlier is None or earlier.report_hash != parsed.hash:
        return None
    if earlier.answer is None:  # imported before answers were kept: the usage as it is now
        license = await session.get(License, license_id, options=[selectinload(License.plan)])
        assert license is not None  # the binding's foreign key cascades
        usage = await usage_summary(session, license_id)
        over = usage.over_limits(license.effective_terms(license.plan))
    else:
        usage, over = UsageSummary(**earlier.answer["usage"]), list(earlier.answer["over_limit"])
    return UsageImported(license_id, activation_id, parsed.seq, len(earlier.measurements), usage, over)


async def _answer_of_concurrent_import(
    session: AsyncSession,
    binding_id: uuid.UUID,
    license_id: uuid.UUID,
    activation_id: uuid.UUID,
    parsed: files.UsageReportFile,
) -> UsageImported:
    """This import lost the race for the chain's next link: roll it back and answer the winner's answer, if the
    winner imported this very file."""
    await session.rollback()
    earlier = await _imported_before(session, binding_id, license_id, activation_id, parsed)
    if earlier is None:
        raise _rejected(FileError(FileReason.USAGE_REPLAYED, "another report was imported concurrently", "seq"))
    return earlier
