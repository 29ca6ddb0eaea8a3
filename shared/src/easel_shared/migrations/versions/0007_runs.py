"""runs: generations that wait for their upstream nodes, and runs of several image nodes

Revision ID: 0007
Revises: 0006
Create Date: 2027-03-15 09:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

UPSTREAM_WAIT = "status = 'queued' AND blocked_by = 'upstream'"


def _str(name: str, length: int, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=nullable)


def upgrade() -> None:
    # A plain ADD COLUMN (no table rebuild on SQLite).
    op.add_column('generations', sa.Column('waits_for', sa.JSON(), nullable=True))
    op.create_index('ix_generations_upstream_wait', 'generations', ['board_id'], unique=False,
                    postgresql_where=sa.text(UPSTREAM_WAIT), sqlite_where=sa.text(UPSTREAM_WAIT))
    op.create_table(
        'runs',
        _str('id', 40),
        _str('board_id', 40),
        _str('account_id', 40),
        sa.Column('items', sa.JSON(), nullable=False),
        sa.Column('credits', sa.BigInteger(), nullable=False),
        _str('idempotency_key', 255, nullable=True),
        _str('request_fingerprint', 64, nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('canceled_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('account_id', 'idempotency_key', name='uq_runs_idempotency'),
    )
    op.create_index('ix_runs_account_id', 'runs', ['account_id'], unique=False)
    op.create_index('ix_runs_board_id_id', 'runs', ['board_id', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_runs_board_id_id', table_name='runs')
    op.drop_index('ix_runs_account_id', table_name='runs')
    op.drop_table('runs')
    op.drop_index('ix_generations_upstream_wait', table_name='generations')
    with op.batch_alter_table('generations') as batch:
        batch.drop_column('waits_for')
