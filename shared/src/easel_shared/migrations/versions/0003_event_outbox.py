"""one outbox for live events, retention and task dispatch; per-board event sequence

Revision ID: 0003
Revises: 0002
Create Date: 2027-01-12 09:00:00
"""
import time

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('boards', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_seq', sa.BigInteger(), nullable=False, server_default='0'))
    # Existing boards continue above every `<ms>-<n>` id Redis gave their streams so far (stream
    # ids were Redis's clock before this version): clients holding such an id resume correctly.
    op.execute(sa.text('UPDATE boards SET event_seq = :now').bindparams(now=int(time.time() * 1000)))

    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        # Every live event is a row now: 32-bit ids would run out.
        op.execute('ALTER SEQUENCE IF EXISTS outbox_events_id_seq AS BIGINT')
        op.alter_column('outbox_events', 'id', type_=sa.BigInteger(), existing_nullable=False)
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('board_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
        batch_op.add_column(sa.Column('seq', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('subject_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
        batch_op.create_unique_constraint('uq_outbox_events_board_seq', ['board_id', 'seq'])
        batch_op.create_index(batch_op.f('ix_outbox_events_subject_id'), ['subject_id'], unique=False)
    # What a relay reads after every commit: a board's unpublished events in seq order. Partial,
    # so it stays as small as the backlog while delivered rows wait out their retention.
    op.create_index('ix_outbox_events_pending_board_seq', 'outbox_events', ['board_id', 'seq'], unique=False,
                    postgresql_where=sa.text('processed_at IS NULL'), sqlite_where=sa.text('processed_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_outbox_events_pending_board_seq', table_name='outbox_events')
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_events_subject_id'))
        batch_op.drop_constraint('uq_outbox_events_board_seq', type_='unique')
        batch_op.drop_column('subject_id')
        batch_op.drop_column('seq')
        batch_op.drop_column('board_id')
    with op.batch_alter_table('boards', schema=None) as batch_op:
        batch_op.drop_column('event_seq')
