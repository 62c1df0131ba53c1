"""collections (several galleries per database), NFC subject names

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

The database's gallery becomes the collection ``default`` (its Chroma collections keep their
names, so nothing is re-indexed). Subject names are NFC-normalised: names that only differed by
their Unicode composition ("Zoë" typed precomposed or decomposed) are one person, so such
subjects are merged (their images and faces join the oldest; its template is recomputed). The
log says how many were merged, never which names.
"""
from __future__ import annotations

import logging
import unicodedata
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

log = logging.getLogger("facedb.migrations")
#: SQLite reflects the unnamed UNIQUE(name) of 0001 without a name: this names it for the drop.
_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    conn = op.get_bind()
    pg = conn.dialect.name == "postgresql"
    op.create_table('collections',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('name', sa.String(length=128), nullable=False),
                    sa.Column('pack', sa.String(length=512), nullable=True),
                    sa.Column('threshold', sa.Float(), nullable=True),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('name'),
                    sqlite_autoincrement=True)
    now = datetime.now(timezone.utc)
    conn.execute(sa.text("INSERT INTO collections (name, created_at) VALUES ('default', :at)"),
                 {"at": now.replace(tzinfo=None) if not pg else now})
    default_id = conn.execute(sa.text("SELECT id FROM collections WHERE name = 'default'")).scalar_one()

    for table in ('subjects', 'images', 'faces', 'failures'):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column('collection_id', sa.Integer(), nullable=True))
    for table in ('subject_templates', 'pending_deletes'):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column('collection_id', sa.Integer(), nullable=True))
    for table in ('subjects', 'images', 'faces', 'failures', 'subject_templates', 'pending_deletes'):
        conn.execute(sa.text(f"UPDATE {table} SET collection_id = :c"), {"c": default_id})

    with op.batch_alter_table('subjects', naming_convention=_NAMES) as batch_op:
        batch_op.alter_column('collection_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint('subjects_name_key' if pg else 'uq_subjects_name', type_='unique')
        batch_op.create_unique_constraint('uq_subjects_collection_name', ['collection_id', 'name'])
        batch_op.create_index(batch_op.f('ix_subjects_collection_id'), ['collection_id'], unique=False)
        batch_op.create_foreign_key('fk_subjects_collection_id', 'collections', ['collection_id'], ['id'])
    with op.batch_alter_table('images') as batch_op:
        batch_op.alter_column('collection_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint('uq_images_sha256', type_='unique')
        batch_op.create_unique_constraint('uq_images_collection_sha256', ['collection_id', 'sha256'])
        batch_op.create_foreign_key('fk_images_collection_id', 'collections', ['collection_id'], ['id'])
    # Recreated on SQLite: AUTOINCREMENT is not reflected, so it is given again (face ids are never reused).
    with op.batch_alter_table('faces', table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.alter_column('collection_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_index('ix_faces_model_indexed')
        batch_op.create_index('ix_faces_collection_model_indexed', ['collection_id', 'model', 'indexed'],
                              unique=False)
        batch_op.create_foreign_key('fk_faces_collection_id', 'collections', ['collection_id'], ['id'])
    with op.batch_alter_table('failures') as batch_op:
        batch_op.alter_column('collection_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f('ix_failures_collection_id'), ['collection_id'], unique=False)
        batch_op.create_foreign_key('fk_failures_collection_id', 'collections', ['collection_id'], ['id'])
    with op.batch_alter_table('subject_templates') as batch_op:
        batch_op.alter_column('collection_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f('ix_subject_templates_collection_id'), ['collection_id'], unique=False)
    with op.batch_alter_table('pending_deletes') as batch_op:
        batch_op.alter_column('collection_id', existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table('api_keys') as batch_op:
        batch_op.add_column(sa.Column('collection', sa.String(length=128), nullable=True))
    with op.batch_alter_table('audit') as batch_op:
        batch_op.add_column(sa.Column('collection', sa.String(length=128), nullable=True))
    _merge_nfc_names(conn)


def _merge_nfc_names(conn: sa.engine.Connection) -> None:
    """NFC-normalise every subject name; subjects whose names collide afterwards become one."""
    import numpy as np

    groups: dict[tuple[int, str], list[tuple[int, str]]] = {}
    for sid, cid, name in conn.execute(sa.text("SELECT id, collection_id, name FROM subjects ORDER BY id")):
        groups.setdefault((int(cid), unicodedata.normalize("NFC", name)), []).append((int(sid), name))
    merged = renamed = 0
    touched: list[tuple[int, int, list[int]]] = []  # (collection, keeper, merged-away ids)
    for (cid, nfc), members in groups.items():
        if len(members) == 1 and members[0][1] == nfc:
            continue
        # The subject already spelled in NFC keeps its id (API users may know it), else the oldest.
        keeper = next((sid for sid, name in members if name == nfc), members[0][0])
        others = [sid for sid, _ in members if sid != keeper]
        for sid, name in members:
            if sid in others:
                for table in ('images', 'faces'):
                    conn.execute(sa.text(f"UPDATE {table} SET subject_id = :k WHERE subject_id = :o"),
                                 {"k": keeper, "o": sid})
                conn.execute(sa.text("UPDATE audit SET subject_id = :k WHERE subject_id = :o"), {"k": keeper, "o": sid})
                conn.execute(sa.text("DELETE FROM subjects WHERE id = :o"), {"o": sid})
            if name != nfc:
                conn.execute(sa.text("UPDATE failures SET subject_name = :n WHERE subject_name = :o "
                                     "AND collection_id = :c"), {"n": nfc, "o": name, "c": cid})
        conn.execute(sa.text("UPDATE subjects SET name = :n WHERE id = :k"), {"n": nfc, "k": keeper})
        merged += len(others)
        renamed += 1
        if others:
            touched.append((cid, keeper, others))
    if touched:
        # The keepers' templates are recomputed from their indexed faces; the merged-away subjects
        # leave empty markers, so search caches drop them. One new change number for all.
        seq = int(conn.execute(sa.text("SELECT value FROM counters WHERE name = 'templates_seq'")).scalar() or 0) + 1
        if conn.execute(sa.text("SELECT count(*) FROM counters WHERE name = 'templates_seq'")).scalar():
            conn.execute(sa.text("UPDATE counters SET value = :v WHERE name = 'templates_seq'"), {"v": seq})
        else:
            conn.execute(sa.text("INSERT INTO counters (name, value) VALUES ('templates_seq', :v)"), {"v": seq})
        for cid, keeper, others in touched:
            sums: dict[str, tuple[np.ndarray, int]] = {}
            for model, emb in conn.execute(sa.text("SELECT model, embedding FROM faces WHERE subject_id = :k "
                                                   "AND indexed = :yes ORDER BY id"), {"k": keeper, "yes": True}):
                v = np.frombuffer(emb, dtype=np.float32).astype(np.float64)
                total, n = sums.get(model, (np.zeros_like(v), 0))
                sums[model] = (total + v, n + 1)
            models = {m for (m,) in conn.execute(sa.text("SELECT DISTINCT model FROM subject_templates "
                                                         f"WHERE subject_id IN ({', '.join(str(i) for i in [keeper, *others])})"))}
            conn.execute(sa.text(f"DELETE FROM subject_templates WHERE subject_id IN "
                                 f"({', '.join(str(i) for i in [keeper, *others])})"))
            for model, (total, n) in sums.items():
                conn.execute(sa.text("INSERT INTO subject_templates (subject_id, model, collection_id, vector, n_faces, "
                                     "seq) VALUES (:s, :m, :c, :v, :n, :q)"),
                             {"s": keeper, "m": model, "c": cid, "v": total.astype(np.float32).tobytes(), "n": n,
                              "q": seq})
            for sid in others:
                for model in models:
                    conn.execute(sa.text("INSERT INTO subject_templates (subject_id, model, collection_id, vector, "
                                         "n_faces, seq) VALUES (:s, :m, :c, :v, 0, :q)"),
                                 {"s": sid, "m": model, "c": cid, "v": b"", "q": seq})
    if renamed:
        log.warning("subject names NFC-normalised: %d subject(s) renamed, %d merged into another with the "
                    "same normalised name", renamed, merged)


def downgrade() -> None:
    """Back to one gallery: only a database whose one collection is ``default`` (the NFC merge
    is not undone: those subjects stay one)."""
    conn = op.get_bind()
    pg = conn.dialect.name == "postgresql"
    others = conn.execute(sa.text("SELECT count(*) FROM collections WHERE name <> 'default'")).scalar()
    if others:
        raise RuntimeError(f"this database has {others} collection(s) besides 'default': delete them "
                           "(`facedb collections delete NAME --yes`) before downgrading below 0005")
    for table in ('audit', 'api_keys'):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column('collection')
    with op.batch_alter_table('pending_deletes') as batch_op:
        batch_op.drop_column('collection_id')
    with op.batch_alter_table('subject_templates') as batch_op:
        batch_op.drop_index(batch_op.f('ix_subject_templates_collection_id'))
        batch_op.drop_column('collection_id')
    with op.batch_alter_table('failures') as batch_op:
        batch_op.drop_constraint('fk_failures_collection_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_failures_collection_id'))
        batch_op.drop_column('collection_id')
    with op.batch_alter_table('faces', table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_constraint('fk_faces_collection_id', type_='foreignkey')
        batch_op.drop_index('ix_faces_collection_model_indexed')
        batch_op.create_index('ix_faces_model_indexed', ['model', 'indexed'], unique=False)
        batch_op.drop_column('collection_id')
    with op.batch_alter_table('images') as batch_op:
        batch_op.drop_constraint('fk_images_collection_id', type_='foreignkey')
        batch_op.drop_constraint('uq_images_collection_sha256', type_='unique')
        batch_op.create_unique_constraint('uq_images_sha256', ['sha256'])
        batch_op.drop_column('collection_id')
    with op.batch_alter_table('subjects') as batch_op:
        batch_op.drop_constraint('fk_subjects_collection_id', type_='foreignkey')
        batch_op.drop_constraint('uq_subjects_collection_name', type_='unique')
        batch_op.drop_index(batch_op.f('ix_subjects_collection_id'))
        batch_op.create_unique_constraint('subjects_name_key' if pg else 'uq_subjects_name', ['name'])
        batch_op.drop_column('collection_id')
    op.drop_table('collections')
