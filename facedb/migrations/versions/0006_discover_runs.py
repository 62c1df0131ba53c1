"""discover runs: saved ``facedb discover`` faces, clusters and embeddings

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('discover_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('collection_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('pack', sa.String(length=512), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('cluster_threshold', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['collection_id'], ['collections.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('collection_id', 'name', name='uq_discover_runs_collection_name')
    )
    with op.batch_alter_table('discover_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_discover_runs_collection_id'), ['collection_id'], unique=False)
    op.create_table('discover_faces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('cluster', sa.Integer(), nullable=False),
    sa.Column('image', sa.Text(), nullable=False),
    sa.Column('source_path', sa.Text(), nullable=True),
    sa.Column('face_index', sa.Integer(), nullable=False),
    sa.Column('bbox', sa.JSON(), nullable=False),
    sa.Column('embedding', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['discover_runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('discover_faces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_discover_faces_run_id'), ['run_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('discover_faces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_discover_faces_run_id'))
    op.drop_table('discover_faces')
    with op.batch_alter_table('discover_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_discover_runs_collection_id'))
    op.drop_table('discover_runs')
