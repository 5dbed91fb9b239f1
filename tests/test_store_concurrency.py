import multiprocessing
import threading
import time

from shpers_core.events import Finished, Log, Reporter, Step, Validation
from shpers_core.store import RunStore, StoreSink, latest_version

BATCHES, BATCH = 40, 25


def write_points(db_path, run_id, offset):
    with RunStore(db_path, recover=False) as store:
        for b in range(BATCHES):
            store.add_curve_points(run_id, [("train", "train", b * BATCH + i, offset + b) for i in range(BATCH)])


def test_two_processes_write_while_a_third_reads(tmp_path):
    path = tmp_path / "s.sqlite"
    with RunStore(path) as store:
        a = store.create_run("lora", {}, "m", "h", [])
        b = store.create_run("lora", {}, "m", "h", [])
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=write_points, args=(str(path), rid, off)) for rid, off in ((a, 0.0), (b, 1000.0))]
    for w in writers:
        w.start()
    seen = {a: 0, b: 0}
    with RunStore(path, recover=False) as reader:
        while any(w.is_alive() for w in writers):
            for rid in (a, b):
                n = reader.db.execute("SELECT count(*) FROM curves WHERE run_id = ?", [rid]).fetchone()[0]
                # A reader never sees half a batch, and never sees points vanish.
                assert n % BATCH == 0 and n >= seen[rid]
                seen[rid] = n
            time.sleep(0.01)
        for w in writers:
            w.join(60)
            assert w.exitcode == 0
        for rid, offset in ((a, 0.0), (b, 1000.0)):
            points = reader.curves(rid)["train"].points
            assert [p[0] for p in points] == list(range(BATCHES * BATCH))
            assert all(v == offset + s // BATCH for s, v in points)


def test_sink_in_a_worker_thread(tmp_path):
    path = tmp_path / "s.sqlite"
    with RunStore(path) as store:
        rid = store.create_run("lora", {}, "m", "h", [])
        store.start_run(rid)
        store.update_run(rid, heartbeat_at="2020-01-01T00:00:00.000+00:00")
    sink = StoreSink(path, rid, flush_every_s=60)
    reporter = Reporter(sink)

    def job():
        reporter.log("starting")
        for s in range(30):
            reporter.emit(Step(step=s, total_steps=30, loss=1.0 / (s + 1), learning_rate=1e-3))
        reporter.emit(Validation(step=29, loss=0.5))
        with RunStore(path, recover=False) as peek:
            # Nothing written yet: the flush interval has not passed and no final event came.
            assert peek.curves(rid) == {}
        reporter.emit(Finished(run_id=rid, metrics={}))
        reporter.log("after finishing")

    worker = threading.Thread(target=job)
    worker.start()
    worker.join()
    sink.close()  # from another thread than the one that opened the sink's connection
    with RunStore(path, recover=False) as store:
        curves = store.curves(rid)
        assert len(curves["train"].points) == 30 and curves["val"].points == [(29, 0.5)]
        assert [line.message for line in store.logs(rid)] == ["starting", "after finishing"]
        assert store.get_run(rid).heartbeat_at > "2020"


def test_sink_flushes_on_interval(tmp_path):
    path = tmp_path / "s.sqlite"
    with RunStore(path) as store:
        rid = store.create_run("lora", {}, "m", "h", [])
    with StoreSink(path, rid, flush_every_s=0) as sink:
        sink(Step(step=0, total_steps=2, loss=2.0, learning_rate=0.1, series="p1/train"))
        sink(Log("hello", level="warning"))
        with RunStore(path, recover=False) as store:
            assert store.curves(rid)["p1/train"].points == [(0, 2.0)]
            assert [(line.level, line.message) for line in store.logs(rid)] == [("warning", "hello")]


def open_and_create(db_path, queue, barrier):
    barrier.wait(60)
    try:
        with RunStore(db_path) as store:
            queue.put(store.create_run("lora", {}, "m", "h", []))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        queue.put(repr(exc))


def test_processes_opening_a_fresh_file_at_once(tmp_path):
    path = tmp_path / "fresh.sqlite"
    ctx = multiprocessing.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(3)
    procs = [ctx.Process(target=open_and_create, args=(str(path), queue, barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    assert all(r.startswith("r") for r in results), results
    with RunStore(path) as store:
        assert store.schema_version == latest_version() and len(store.list_runs()) == 3


def test_a_fresh_file_created_between_the_openers_reads_is_still_ours(tmp_path, monkeypatch):
    """CI once saw 'is not a shpers run database' when another process's first migration committed
    between this opener's reads of the version and of the tables: the reads must see one moment."""
    from sqlite_utils import Database

    path = tmp_path / "fresh.sqlite"
    real_table_names = Database.table_names
    other = threading.Thread(target=lambda: RunStore(path, recover=False).close())

    def table_names_while_another_opens(self, *args, **kwargs):
        if not other.is_alive() and other.ident is None:
            other.start()
            other.join(1.0)  # without a consistent read, the other opener finishes here
        return real_table_names(self, *args, **kwargs)

    monkeypatch.setattr(Database, "table_names", table_names_while_another_opens)
    with RunStore(path, recover=False) as store:
        assert store.schema_version == latest_version()
    other.join(60)
    with RunStore(path) as store:
        assert store.schema_version == latest_version()
