import sqlite3

import pytest

from shpers_core.store import RunStore, StoreError, latest_version, schema


def test_fresh_file_gets_latest_schema_in_wal_mode(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        assert store.schema_version == latest_version() >= 1
        assert store.db.journal_mode == "wal"
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        assert {"runs", "curves", "metrics", "persona_scores", "predictions", "artefacts", "events_log"} <= set(
            store.db.table_names())


def _one_more_migration(db):
    db["runs"].add_column("colour", str)
    db["curves"].transform(types={"value": float}, not_null={"value"}, defaults={"value": 0.0})


def test_older_file_is_upgraded_keeping_its_rows(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite"
    with RunStore(path) as store:
        rid = store.create_run("lora", {}, "m", "h", ["p1"])
        store.add_curve_points(rid, [("train", "train", 0, 1.5)])
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, _one_more_migration])
    with RunStore(path) as store:
        assert store.schema_version == len(schema.MIGRATIONS)
        assert "colour" in store.db["runs"].columns_dict
        assert store.curves(rid)["train"].points == [(0, 1.5)]
        assert store.db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_failed_migration_leaves_previous_version(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite"
    RunStore(path).close()

    def broken(db):
        db["runs"].add_column("half_done", str)
        raise sqlite3.OperationalError("simulated failure mid-migration")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, broken])
    with pytest.raises(StoreError, match="simulated failure"):
        RunStore(path)
    monkeypatch.undo()
    with RunStore(path) as store:
        assert store.schema_version == latest_version()
        assert "half_done" not in store.db["runs"].columns_dict


def test_newer_file_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match=rf"newer shpers \(schema v99; this one knows up to v{latest_version()}\)"):
        RunStore(path)


def test_other_files_are_refused(tmp_path):
    foreign = tmp_path / "other.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (x)")
    conn.close()
    with pytest.raises(StoreError, match="not a shpers run database"):
        RunStore(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database at all" * 50)
    with pytest.raises(StoreError, match="is not a SQLite database"):
        RunStore(text)
    with pytest.raises(StoreError, match="does not exist"):
        RunStore(tmp_path / "missing" / "s.sqlite")


def test_read_only_open_of_an_old_file_asks_for_write_access(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite"
    RunStore(path).close()
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, _one_more_migration])
    with pytest.raises(StoreError, match="opened read-only"):
        RunStore(path, read_only=True)
