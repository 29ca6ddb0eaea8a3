"""webhooks: endpoints per account and one delivery row per event and endpoint

Revision ID: 0005
Revises: 0004
Create Date: 2027-02-01 09:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _str(name: str, length: int, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        'webhook_endpoints',
        _str('id', 40),
        _str('account_id', 40),
        _str('url', 2048),
        sa.Column('events', sa.JSON(), nullable=False),
        _str('description', 500),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        _str('disabled_reason', 200, nullable=True),
        _str('secret', 100),
        _str('previous_secret', 100, nullable=True),
        _ts('previous_secret_expires_at'),
        _ts('failing_since'),
        _ts('created_at', nullable=False),
        _ts('updated_at', nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_webhook_endpoints_account_id_id', 'webhook_endpoints', ['account_id', 'id'], unique=False)
    op.create_table(
        'webhook_deliveries',
        _str('id', 40),
        _str('endpoint_id', 40),
        _str('account_id', 40),
        _str('event_id', 40),
        _str('event_type', 50),
        sa.Column('body', sa.Text(), nullable=False),
        _str('request_id', 64, nullable=True),
        _str('state', 20),
        sa.Column('attempts', sa.Integer(), nullable=False),
        _ts('next_attempt_at'),
        _ts('dispatched_at'),
        _ts('locked_until'),
        _ts('last_attempt_at'),
        sa.Column('last_status_code', sa.Integer(), nullable=True),
        _str('last_error', 500, nullable=True),
        sa.Column('last_response', sa.Text(), nullable=True),
        _ts('delivered_at'),
        _ts('created_at', nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_webhook_deliveries_endpoint_id_id', 'webhook_deliveries', ['endpoint_id', 'id'],
                    unique=False)
    op.create_index('ix_webhook_deliveries_state_next_attempt_at', 'webhook_deliveries',
                    ['state', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_webhook_deliveries_state_next_attempt_at', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_endpoint_id_id', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_index('ix_webhook_endpoints_account_id_id', table_name='webhook_endpoints')
    op.drop_table('webhook_endpoints')
