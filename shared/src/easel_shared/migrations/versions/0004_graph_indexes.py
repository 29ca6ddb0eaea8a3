"""graph indexes: node operations read one node's neighbourhood, not its board

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:00:00
"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# Each single-column index replaced here is the first column of its replacement, so every
# query it served is served by the composite one (and writes keep one index each, not two).
_REPLACED = [
    # (table, old index, old columns, new index, new columns)
    ('nodes', 'ix_nodes_board_id', ['board_id'], 'ix_nodes_board_id_id', ['board_id', 'id']),
    ('edges', 'ix_edges_board_id', ['board_id'], 'ix_edges_board_id_seq', ['board_id', 'seq']),
    ('edges', 'ix_edges_target_node_id', ['target_node_id'], 'ix_edges_target_node_id_seq',
     ['target_node_id', 'seq']),
    ('edges', 'ix_edges_source_node_id', ['source_node_id'], 'ix_edges_source_node_id_seq',
     ['source_node_id', 'seq']),
]


def upgrade() -> None:
    for table, old, _, new, columns in _REPLACED:
        op.create_index(new, table, columns, unique=False)
        op.drop_index(old, table_name=table)


def downgrade() -> None:
    for table, old, old_columns, new, _ in reversed(_REPLACED):
        op.create_index(old, table, old_columns, unique=False)
        op.drop_index(new, table_name=table)
