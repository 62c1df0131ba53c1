"""faces: an index by subject, pack and indexed flag

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
from __future__ import annotations

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('faces', schema=None) as batch_op:
        batch_op.create_index('ix_faces_subject_model_indexed', ['subject_id', 'model', 'indexed'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('faces', schema=None) as batch_op:
        batch_op.drop_index('ix_faces_subject_model_indexed')
