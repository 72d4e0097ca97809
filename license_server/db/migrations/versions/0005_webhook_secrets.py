"""webhook secrets encrypted at rest

Revision ID: 0005_webhook_secrets
Revises: 0004
Create Date: 2026-12-01 07:40:00

Each endpoint's plain ``secret`` becomes ``encrypted_secret``, sealed with the key from keys/secret-hashing.key
(signing/encryption.py). A database with endpoints therefore needs the server's keys to upgrade (and to downgrade).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from license_server.config import Settings
from license_server.signing.encryption import WEBHOOK_SECRETS, SecretBox
from license_server.signing.keys import load_secret_hashing_key

revision: str = "0005_webhook_secrets"
down_revision: str | None = "0005_smalls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

endpoints = sa.table(
    "webhook_endpoints",
    sa.column("id", sa.Uuid()),
    sa.column("secret", sa.String()),
    sa.column("encrypted_secret", sa.String()),
)


def _secret_box() -> SecretBox:
    settings: Settings = context.config.attributes.get("settings") or Settings()
    return SecretBox(load_secret_hashing_key(settings.keys_dir), purpose=WEBHOOK_SECRETS)


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("encrypted_secret", sa.String(length=256), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.select(endpoints.c.id, endpoints.c.secret)).all()
    if rows:
        box = _secret_box()
        for endpoint_id, secret in rows:
            connection.execute(
                endpoints.update()
                .where(endpoints.c.id == endpoint_id)
                .values(encrypted_secret=box.seal(secret, bound_to=str(endpoint_id)))
            )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.alter_column("encrypted_secret", existing_type=sa.String(length=256), nullable=False)
        batch_op.drop_column("secret")


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret", sa.String(length=128), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.select(endpoints.c.id, endpoints.c.encrypted_secret)).all()
    if rows:
        box = _secret_box()
        for endpoint_id, sealed in rows:
            connection.execute(
                endpoints.update()
                .where(endpoints.c.id == endpoint_id)
                .values(secret=box.open(sealed, bound_to=str(endpoint_id)))
            )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.alter_column("secret", existing_type=sa.String(length=128), nullable=False)
        batch_op.drop_column("encrypted_secret")
