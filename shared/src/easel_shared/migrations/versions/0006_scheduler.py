"""scheduler: per-account and per-model caps, fair order, waiting generations

Revision ID: 0006
Revises: 0005
Create Date: 2027-03-01 09:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

WAITING = "status = 'queued' AND dispatched_at IS NULL"
IN_FLIGHT = "status IN ('queued', 'running') AND dispatched_at IS NOT NULL"


def _partial(name: str, columns: list[str], where: str) -> None:
    op.create_index(name, 'generations', columns, unique=False,
                    postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def upgrade() -> None:
    # Plain ADD COLUMNs (no table rebuild on SQLite); the api bounds max_running and weight.
    op.add_column('accounts', sa.Column('max_running', sa.Integer(), nullable=True))
    op.add_column('accounts', sa.Column('weight', sa.Integer(), nullable=False, server_default='1'))
    op.add_column('generations', sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('generations', sa.Column('blocked_by', sqlmodel.sql.sqltypes.AutoString(length=20),
                                           nullable=True))
    # Everything already queued or running was handed to the broker before this version: it holds
    # its slots from now on.
    op.execute("UPDATE generations SET dispatched_at = COALESCE(enqueued_at, created_at) "
               "WHERE status IN ('queued', 'running')")
    _partial('ix_generations_waiting', ['account_id', 'created_at', 'id'], WAITING)
    _partial('ix_generations_waiting_model', ['model_id', 'account_id'], WAITING)
    _partial('ix_generations_in_flight_account', ['account_id'], IN_FLIGHT)
    _partial('ix_generations_in_flight_model', ['model_id'], IN_FLIGHT)
    op.create_table(
        'account_schedules',
        sa.Column('account_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('vtime', sa.Float(), nullable=False),
        sa.Column('served', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('account_id'),
    )
    state = op.create_table(
        'scheduler_state',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('vtime', sa.Float(), nullable=False),
        sa.Column('serial', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.bulk_insert(state, [{'id': 1, 'vtime': 0.0, 'serial': 0}])


def downgrade() -> None:
    op.drop_table('scheduler_state')
    op.drop_table('account_schedules')
    for name in ('ix_generations_in_flight_model', 'ix_generations_in_flight_account',
                 'ix_generations_waiting_model', 'ix_generations_waiting'):
        op.drop_index(name, table_name='generations')
    with op.batch_alter_table('generations') as batch:
        batch.drop_column('blocked_by')
        batch.drop_column('dispatched_at')
    with op.batch_alter_table('accounts') as batch:
        batch.drop_column('weight')
        batch.drop_column('max_running')
