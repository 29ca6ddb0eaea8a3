"""vendor jobs and progress on generations

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 08:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('generations', schema=None) as batch_op:
        # The vendor's job (fal request, Replicate prediction, BFL task) once the vendor accepted
        # it: a retried run resumes it instead of paying for a second one.
        batch_op.add_column(sa.Column('vendor_job', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('progress', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('generations', schema=None) as batch_op:
        batch_op.drop_column('progress')
        batch_op.drop_column('vendor_job')
