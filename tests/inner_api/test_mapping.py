"""The pure mappings: the /info body from facts alone, the `none` answer, and the edge's path from signed claims."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from license_server.inner_api.mapping import (
    AccessMode,
    info_body,
    info_body_without_license,
    permissions_body,
    terms_from_claims,
    timestamp_body,
)
from license_server.licenses.documents import license_content
from license_server.licenses.models import Customer, License
from license_server.licenses.terms import LicenseTerms
from license_server.licenses.usage import UsageSummary
from license_server.lifecycle.status import Reason, Status, StatusResult
from tests.inner_api.test_contract import RICH_TERMS

EXPIRES = datetime(2027, 1, 31, 18, 30, tzinfo=UTC)


def test_info_is_a_function_of_terms_expiry_status_and_usage() -> None:
    terms = LicenseTerms.model_validate(RICH_TERMS)
    usage = UsageSummary(workspaces=2, members_per_workspace=3, licensed_seats=9, reported=True)
    body = info_body(terms=terms, expires_at=EXPIRES, status=Status.EXPIRING, usage=usage)
    assert body == info_body(terms=terms, expires_at=EXPIRES, status=Status.EXPIRING, usage=usage)
    assert body["License"] == {
        "status": "expiring",
        "expiredAt": "2027-01-31",
        "workspaces": {"enabled": True, "limit": 3, "used": 2},
        "licensedSeats": {"enabled": True, "limit": 50, "used": 9},
    }


def test_every_status_maps_to_itself_and_none_has_the_full_shape() -> None:
    for status in Status:
        body = info_body(terms=LicenseTerms(), expires_at=EXPIRES, status=status, usage=UsageSummary())
        assert body["License"]["status"] == status.value
    without = info_body_without_license()
    assert without["License"]["status"] == "none"
    assert without["License"]["expiredAt"] == ""
    assert set(without) == set(
        info_body(terms=LicenseTerms(), expires_at=EXPIRES, status=Status.NONE, usage=UsageSummary())
    )


def test_the_signed_document_claims_give_the_same_info_as_the_terms() -> None:
    """The edge builds /info from a verified license document; it must answer exactly as the vendor server does."""
    terms = LicenseTerms.model_validate(RICH_TERMS)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    license = License(id=uuid.uuid4(), starts_at=now, expires_at=EXPIRES, terms=RICH_TERMS)
    customer = Customer(id=uuid.uuid4(), name="Acme", external_id=None)
    claims = license_content(
        license=license,
        customer=customer,
        plan=None,
        terms=terms,
        status=StatusResult(Status.ACTIVE, Reason.ACTIVE),
        issuer="test",
    )
    usage = UsageSummary(workspaces=1)
    from_claims = info_body(terms=terms_from_claims(claims), expires_at=EXPIRES, status=Status.ACTIVE, usage=usage)
    assert from_claims == info_body(terms=terms, expires_at=EXPIRES, status=Status.ACTIVE, usage=usage)


def test_timestamps_carry_a_utc_offset() -> None:
    assert timestamp_body(datetime(2026, 11, 23, 10, 0, tzinfo=UTC)) == "2026-11-23T10:00:00+00:00"
    east = datetime(2026, 11, 23, 15, 0, tzinfo=timezone(timedelta(hours=5)))
    assert timestamp_body(east) == "2026-11-23T10:00:00+00:00"


def test_only_private_apps_consult_the_allow_list() -> None:
    modes = {mode.value: mode for mode in AccessMode}
    assert permissions_body(modes, allow_listed=[]) == {
        "public": True,
        "private": False,
        "private_all": True,
        "sso_verified": True,
    }
    assert permissions_body(modes, allow_listed=["private"])["private"] is True


def test_members_of_a_workspace_are_the_largest_count_any_current_report_gives() -> None:
    """The vendor's rule across its installs' reports and the edge's for its one report: the same function."""
    from license_server.inner_api.mapping import workspace_member_counts

    reports = [[{"id": "ws-1", "members": 3}, {"id": "ws-2", "members": 1}], [{"id": "ws-1", "members": 5}], []]
    assert workspace_member_counts(reports) == {"ws-1": 5, "ws-2": 1}
