"""The catalog schema: Alembic migrations ship inside the package and match the models."""
from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

import facedb
from facedb.catalog.database import MIGRATIONS_DIR, SCHEMA_HEAD, Catalog
from facedb.catalog.models import Base


def _script() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg)


def test_migrations_ship_inside_the_package() -> None:
    pkg = Path(facedb.__file__).resolve().parent
    assert MIGRATIONS_DIR.parent == pkg
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert list((MIGRATIONS_DIR / "versions").glob("0001_*.py"))


def test_schema_head_constant_is_alembic_head() -> None:
    assert _script().get_current_head() == SCHEMA_HEAD


def test_upgrade_creates_schema_matching_models(tmp_path: Path) -> None:
    cat = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    assert cat.schema_revision() is None
    cat.upgrade()
    assert cat.schema_revision() == SCHEMA_HEAD
    tables = set(inspect(cat.engine).get_table_names())
    assert {"subjects", "images", "faces", "failures", "pending_deletes", "settings"} <= tables
    with cat.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    cat.upgrade()  # idempotent
    cat.dispose()


def test_face_ids_are_never_reused(tmp_path: Path) -> None:
    """A deleted face's id must not come back: a stale index entry could alias a new face."""
    from facedb.catalog.models import Face, Image, Subject

    cat = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    cat.upgrade()

    def add_face(s, sub_id: int, img_id: int) -> int:
        row = Face(image_id=img_id, subject_id=sub_id, model="m", x1=0, y1=0, x2=1, y2=1, score=1.0,
                   landmarks=[], dim=1, embedding=b"\0\0\0\0", indexed=True)
        s.add(row)
        s.flush()
        return row.id

    with cat.session() as s:
        sub = Subject(name="a")
        s.add(sub)
        s.flush()
        img = Image(subject_id=sub.id, path="p", sha256="0" * 64, size_bytes=1, width=1, height=1)
        s.add(img)
        s.flush()
        first = add_face(s, sub.id, img.id)
        last = add_face(s, sub.id, img.id)
        sub_id, img_id = sub.id, img.id
    with cat.session() as s:
        s.delete(s.get(Face, last))
    with cat.session() as s:
        new = add_face(s, sub_id, img_id)
    assert first < last < new
    cat.dispose()


def test_the_version_is_the_distributions() -> None:
    from importlib import metadata

    assert metadata.version("facedb-service") == facedb.__version__
