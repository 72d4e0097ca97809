"""Pure parts: signatures agree with the reference implementation; the backoff schedule keeps its bounds."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

from standardwebhooks.webhooks import Webhook

from license_server.events.webhooks import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    BACKOFF_FLOOR,
    backoff_delay,
    generate_secret,
    sign,
)


def test_secrets_are_fresh_standard_webhooks_secrets() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_signatures_match_the_reference_implementation() -> None:
    secret = generate_secret()
    body = '{"type":"license.revoked","timestamp":"2026-06-01T12:00:00Z","data":{"event_id":1,"note":"é"}}'
    now = datetime.now(UTC).replace(microsecond=0)
    signature = sign(secret, message_id="evt_1", timestamp=int(now.timestamp()), body=body)

    assert signature == Webhook(secret).sign("evt_1", now, body)
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
    assert Webhook(secret).verify(body.encode(), headers)["data"]["note"] == "é"


def test_backoff_doubles_from_five_seconds_up_to_six_hours_with_full_jitter() -> None:
    rng = random.Random(20261123)  # noqa: S311 - a seeded, repeatable schedule; production uses SystemRandom
    ceilings = []
    for attempts in range(1, 20):
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempts - 1))
        samples = [backoff_delay(attempts, rng=rng) for _ in range(300)]
        assert all(BACKOFF_FLOOR <= s <= ceiling for s in samples), attempts
        assert max(samples) > ceiling * 0.9  # the whole range is used
        assert min(samples) <= max(BACKOFF_FLOOR, ceiling * 0.1)
        ceilings.append(ceiling)
    assert ceilings[:4] == [timedelta(seconds=s) for s in (5, 10, 20, 40)]
    assert ceilings[-1] == BACKOFF_CAP == timedelta(hours=6)
