"""PostgreSQL functions that write a whole batch of reservations, or of commits, in one statement

Revision ID: 0014_usage_batch_functions
Revises: 0013_fanout_xid
Create Date: 2026-12-01 17:45:00

PostgreSQL's usage writer (billing/usage/writer.py) sends a batch's plain reserves, and its plain commits, as one call
each (one statement, its own transaction) instead of three to six statements per write: over asyncpg every statement
is a round trip and most of a write's CPU. Each function does only the common case and answers "deferred" (NULL
columns) for anything else: a replay, a hold that does not fit, a reservation not held. The writer then runs that
write's whole logic in Python (billing/usage/service.py), so refusals, replays and expired holds have one
implementation.
Locks are taken as the Python writes take them (the counter's first, then the reservation's), so the two never
deadlock. SQLite has no functions; its writes are not round trips.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_usage_batch_functions"
down_revision: str | None = "0013_fanout_xid"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A hold that is not taken undoes its two statements by raising this inside its own block (a subtransaction, as the
# writer's savepoint per write would be).
_RESERVE_BATCH = """
CREATE FUNCTION billing_reserve_batch(
    p_account uuid[], p_key text[], p_period_start timestamptz[], p_period_end timestamptz[], p_amount bigint[],
    p_limit bigint[], p_id uuid[], p_request_id text[], p_digest text[], p_expires_at timestamptz[],
    p_now timestamptz[], p_status text
) RETURNS TABLE (o_used bigint, o_held bigint)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_account, 1), 0) LOOP
        BEGIN
            INSERT INTO billing_usage_counters AS c (account_id, key, period_start, period_end, used, held)
            VALUES (p_account[i], p_key[i], p_period_start[i], p_period_end[i], 0, p_amount[i])
            ON CONFLICT (account_id, key, period_start) DO UPDATE SET held = c.held + excluded.held
            RETURNING c.used, c.held INTO o_used, o_held;
            IF p_limit[i] IS NOT NULL AND o_used + o_held > p_limit[i] THEN
                RAISE EXCEPTION USING ERRCODE = 'LS001';
            END IF;
            INSERT INTO billing_reservations (
                id, account_id, key, amount, period_start, request_id, request_digest, status, expires_at,
                committed_amount, history_id, created_at, updated_at
            )
            VALUES (
                p_id[i], p_account[i], p_key[i], p_amount[i], p_period_start[i], p_request_id[i], p_digest[i],
                p_status, p_expires_at[i], NULL, NULL, p_now[i], p_now[i]
            )
            ON CONFLICT (account_id, request_id) DO NOTHING;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'LS001';
            END IF;
        EXCEPTION WHEN SQLSTATE 'LS001' THEN
            o_used := NULL;
            o_held := NULL;
        END;
        RETURN NEXT;
    END LOOP;
END
$$
"""

# A commit that is not plain writes nothing before it finds out, so it needs no block of its own; the locks it took
# are released with the statement's transaction, before the Python commit takes them again.
_COMMIT_BATCH = """
CREATE FUNCTION billing_commit_batch(
    p_account uuid[], p_request_id text[], p_actual bigint[], p_history_id uuid[], p_now timestamptz[],
    p_idempotency_key text[], p_digest text[], p_held text, p_committed text, p_operation text
) RETURNS TABLE (o_key text, o_amount bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_status text;
    v_expires_at timestamptz;
    v_period_start timestamptz;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_account, 1), 0) LOOP
        o_key := NULL;
        o_amount := NULL;
        PERFORM 1 FROM billing_usage_counters c
        WHERE c.account_id = p_account[i] AND (c.key, c.period_start) IN (
            SELECT r.key, r.period_start FROM billing_reservations r
            WHERE r.account_id = p_account[i] AND r.request_id = p_request_id[i]
        )
        FOR UPDATE OF c;
        IF FOUND THEN
            SELECT r.id, r.key, r.amount, r.period_start, r.status, r.expires_at
            INTO v_id, o_key, o_amount, v_period_start, v_status, v_expires_at
            FROM billing_reservations r
            WHERE r.account_id = p_account[i] AND r.request_id = p_request_id[i]
            FOR UPDATE;
            IF v_status = p_held AND v_expires_at > p_now[i] AND p_actual[i] <= o_amount THEN
                UPDATE billing_usage_counters c SET used = c.used + p_actual[i], held = c.held - o_amount
                WHERE c.account_id = p_account[i] AND c.key = o_key AND c.period_start = v_period_start;
                UPDATE billing_reservations r
                SET status = p_committed, committed_amount = p_actual[i], history_id = p_history_id[i],
                    updated_at = p_now[i]
                WHERE r.id = v_id;
                -- the answer, as billing/usage/service.py's _commit_body writes it (a test holds the two equal)
                INSERT INTO billing_usage_records (
                    id, account_id, key, operation, amount, period_start, idempotency_key, request_digest,
                    response, refunded_at, refund_response, created_at
                )
                VALUES (
                    p_history_id[i], p_account[i], o_key, p_operation, p_actual[i], v_period_start,
                    p_idempotency_key[i], p_digest[i],
                    json_build_object(
                        'history_id', p_history_id[i]::text, 'request_id', p_request_id[i], 'key', o_key,
                        'committed', p_actual[i], 'refunded', o_amount - p_actual[i], 'status', p_committed
                    ),
                    NULL, NULL, p_now[i]
                );
            ELSE
                o_key := NULL;
                o_amount := NULL;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_RESERVE_BATCH)
    op.execute(_COMMIT_BATCH)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION billing_commit_batch")
    op.execute("DROP FUNCTION billing_reserve_batch")
