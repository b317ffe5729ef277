import subprocess
import sys
import textwrap

import pytest

from annotator.store import MIGRATIONS, Store
from annotator.types import Box, NotFound, StoreBusy, UserError


def _rows(n, prefix="img", sha_prefix="a"):
    return [
        {"rel_path": f"{prefix}{i:03d}.jpg", "sha256": f"{sha_prefix}{i:063d}", "file": f"images/{prefix}{i}.jpg",
         "thumb": f"thumbs/{prefix}{i}.jpg", "width": 100 + i, "height": 50 + i, "format": "JPEG",
         "size_bytes": 1000 + i}
        for i in range(n)
    ]


def _upload(n):
    return {"source": "test.zip", "added": n, "duplicates": 0, "skipped": 0}


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "meta.duckdb")
    try:
        yield s
    finally:
        s.close()


def _count(store, table):
    return store._one(f"SELECT count(*) FROM {table}")[0]


def test_job_counters_migrate_to_columns_result_and_epochs(tmp_path):
    """A data folder from before migration 5 keeps its jobs: the counters JSON becomes the cursor columns,
    the live and result JSON, and one job_epochs row per epoch."""
    import json

    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description VARCHAR, "
                "applied_at TIMESTAMP)")
    for version, description, statements in MIGRATIONS[:4]:
        for sql in statements:
            con.execute(sql)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, description])
    annotate = {"chunks_in": 3, "logs_in": 7, "chunks_lost": 1, "done_before": 5, "images": 12, "boxes": 40,
                "protected": 2, "errors": 1, "live": {"stage": "succeeded", "ips": 4.5}}
    train = {"chunks_in": 2, "logs_in": 9, "epochs": [{"epoch": 1, "mAP50": 0.1}, {"epoch": 2, "mAP50": 0.4}],
             "result": {"best": "run/weights/best.pt", "metrics": {"mAP50": 0.4}}, "model_id": 3, "model": "m-ft2",
             "snapshot": {"images": 9}, "live": {"stage": "succeeded"}}
    for jid, kind, counters in ((1, "annotate", annotate), (2, "train", train)):
        con.execute("INSERT INTO jobs (id, kind, params, status, counters, created_at) "
                    "VALUES (?, ?, '{}', 'succeeded', ?, now())", [jid, kind, json.dumps(counters)])
    con.close()
    with Store.open(path) as s:
        assert s.schema_version() == MIGRATIONS[-1][0]
        a, t = s.get_job(1), s.get_job(2)
        assert (a.chunks_in, a.logs_in, a.chunks_lost, a.done_before) == (3, 7, 1, 5)
        assert a.result == {"images": 12, "boxes": 40, "protected": 2, "errors": 1}
        assert a.live == {"stage": "succeeded", "ips": 4.5}
        assert t.result == {"best": "run/weights/best.pt", "metrics": {"mAP50": 0.4}, "model_id": 3, "model": "m-ft2"}
        assert s.job_epochs(2) == [{"epoch": 1, "mAP50": 0.1}, {"epoch": 2, "mAP50": 0.4}] and s.job_epochs(1) == []
        assert "counters" not in a.as_dict() and a.as_dict()["result"]["boxes"] == 40


def test_migrations_applied_on_open_and_idempotent(tmp_path):
    path = tmp_path / "sub" / "meta.duckdb"
    latest = MIGRATIONS[-1][0]
    with Store.open(path) as s:
        assert s.schema_version() == latest
        pid = s.create_project("P", ["a"])
    assert path.is_file()
    with Store.open(path) as s:
        assert s.schema_version() == latest
        assert s.migrate() == latest
        assert _count(s, "schema_migrations") == len(MIGRATIONS)
        assert s.get_project(pid).class_names == ["a"], "reopening must keep the data"


def test_in_memory_store():
    with Store.open(None) as s:
        assert s.path is None and s.schema_version() == MIGRATIONS[-1][0]


def test_second_process_gets_store_busy_with_pid(tmp_path):
    path = tmp_path / "meta.duckdb"
    Store.open(path).close()
    holder = textwrap.dedent("""
        import sys, time, duckdb
        con = duckdb.connect(sys.argv[1])
        print("ready", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(StoreBusy) as e:
            Store.open(path)
        assert e.value.pid == proc.pid
        assert str(proc.pid) in str(e.value) and str(path) in str(e.value)
        assert isinstance(e.value, UserError)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    Store.open(path).close()  # free again once the holder is gone


def test_transaction_rolls_back_everything(store):
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction() as cur:
            cur.execute("INSERT INTO projects (name, created_at) VALUES ('ghost', now())")
            cur.execute("INSERT INTO classes VALUES (1, 0, 'x')")
            raise RuntimeError("boom")
    assert store.list_projects() == []
    assert _count(store, "classes") == 0
    pid = store.create_project("Real", ["a", "b"])  # still usable
    assert store.get_project(pid).class_names == ["a", "b"]


def test_create_project_duplicate_name_changes_nothing(store):
    store.create_project("Birds", ["a"])
    with pytest.raises(UserError, match="'birds' already exists"):
        store.create_project("birds", ["x", "y"])
    assert [p.name for p in store.list_projects()] == ["Birds"]
    assert _count(store, "classes") == 1


def test_get_project_missing(store):
    with pytest.raises(NotFound, match="42"):
        store.get_project(42)
    assert store.find_project("nope") is None


def test_add_list_count_images_with_filters_and_paging(store):
    pid = store.create_project("P", ["a"])
    ids_a = store.add_images(pid, "train-set", _rows(7, "a", "a"), _upload(7), user="ann")
    ids_c = store.add_images(pid, "other", _rows(3, "c", "c"), _upload(3))
    assert len(ids_a) == 7 and len(set(ids_a + ids_c)) == 10
    datasets = store.list_datasets(pid)
    assert [(d.name, d.num_images) for d in datasets] == [("train-set", 7), ("other", 3)]
    ds_train, ds_other = datasets[0].id, datasets[1].id
    assert store.find_dataset(pid, "TRAIN-SET").id == ds_train

    assert store.count_images(pid) == 10
    assert store.count_images(pid, ds_train) == 7
    assert store.count_images(pid, ds_other) == 3
    assert [i.id for i in store.list_images(pid)] == sorted(ids_a + ids_c)
    assert [i.id for i in store.list_images(pid, ds_train, offset=0, limit=3)] == ids_a[:3]
    assert [i.id for i in store.list_images(pid, ds_train, offset=3, limit=3)] == ids_a[3:6]
    assert [i.id for i in store.list_images(pid, ds_train, offset=6, limit=3)] == ids_a[6:]
    assert store.list_images(pid, ds_train, offset=7, limit=3) == []
    assert [i.rel_path for i in store.list_images(pid, ds_other)] == ["c000.jpg", "c001.jpg", "c002.jpg"]

    img = store.get_image(ids_a[2])
    assert (img.rel_path, img.width, img.height, img.format, img.size_bytes, img.dataset, img.status) == (
        "a002.jpg", 102, 52, "JPEG", 1002, "train-set", "unreviewed")
    assert img.sha256 == "a" + "2".zfill(63) and img.file == "images/a2.jpg"
    with pytest.raises(NotFound):
        store.get_image(10_000)

    with store.transaction() as cur:  # no review API in the store yet: set two states by hand
        cur.execute("UPDATE images SET status = 'approved' WHERE id IN (?, ?)", [ids_a[0], ids_c[0]])
        cur.execute("UPDATE images SET status = 'rejected' WHERE id = ?", [ids_a[5]])
    assert store.count_images(pid, status="approved") == 2
    assert store.count_images(pid, ds_train, "approved") == 1
    assert [i.id for i in store.list_images(pid, status="rejected")] == [ids_a[5]]
    assert [i.id for i in store.list_images(pid, ds_train, "unreviewed", offset=1, limit=2)] == ids_a[2:4]
    assert store.image_status_counts(pid) == {"unreviewed": 7, "approved": 2, "rejected": 1}
    assert store.image_shas(pid)["c" + "0" * 63] == "other/c000.jpg"
    assert store.dataset_paths(ds_other) == {"c000.jpg", "c001.jpg", "c002.jpg"}
    assert [u["added"] for u in store.uploads(pid)] == [3, 7]


def test_add_images_appends_to_existing_dataset(store):
    pid = store.create_project("P", ["a"])
    ids_a = store.add_images(pid, "train-set", _rows(2, "a", "a"), _upload(2))
    ids_b = store.add_images(pid, "TRAIN-SET", _rows(3, "b", "b"), _upload(3))  # same dataset, any case
    assert len(ids_b) == 3
    assert [(d.name, d.num_images) for d in store.list_datasets(pid)] == [("train-set", 5)]
    assert [i.id for i in store.list_images(pid)] == ids_a + ids_b


def test_add_images_is_one_transaction(store):
    pid = store.create_project("P", ["a"])
    store.add_images(pid, "d", _rows(2), _upload(2))
    with pytest.raises(Exception):
        store.add_images(pid, "new-dataset", _rows(3), _upload(3))  # same sha256s: unique index fails
    assert store.count_images(pid) == 2
    assert [d.name for d in store.list_datasets(pid)] == ["d"]
    assert len(store.uploads(pid)) == 1


def test_boxes_round_trip_with_provenance(store):
    pid = store.create_project("P", ["a", "b"])
    (img,) = store.add_images(pid, "d", _rows(1), _upload(1))
    human = Box(1.5, 2.25, 30.0, 40.75, 0, created_by="ann")
    model = Box(0.0, 0.0, 99.0, 49.0, 1, confidence=0.875, source="model", model_id=3, job_id=9)
    imported = Box(5, 6, 7, 8, 1, source="import")
    ids = store.insert_boxes([(img, human), (img, model), (img, imported)])
    assert len(ids) == 3
    got = store.boxes_for_image(img)
    assert [b.id for b in got] == ids
    h, m, i = got
    assert h.xyxy == (1.5, 2.25, 30.0, 40.75) and h.class_idx == 0
    assert h.confidence is None and h.source == "human" and h.created_by == "ann"
    assert h.model_id is None and h.job_id is None and h.created_at is not None
    assert m.confidence == pytest.approx(0.875) and (m.source, m.model_id, m.job_id, m.class_idx) == ("model", 3, 9, 1)
    assert i.source == "import" and i.confidence is None and i.xyxy == (5, 6, 7, 8)
    assert store.class_box_counts(pid) == {0: 1, 1: 2}
    assert store.boxes_for_image(img + 1000) == []


def test_delete_project_removes_only_its_rows(store):
    keep = store.create_project("Keep", ["a", "b"])
    gone = store.create_project("Gone", ["x"])
    (k_img,) = store.add_images(keep, "d", _rows(1, "k", "k"), _upload(1))
    g_imgs = store.add_images(gone, "d", _rows(2, "g", "g"), _upload(2))
    store.insert_boxes([(k_img, Box(0, 0, 1, 1, 1)), (g_imgs[0], Box(0, 0, 2, 2, 0)), (g_imgs[1], Box(0, 0, 3, 3, 0))])

    store.delete_project(gone)

    assert [p.name for p in store.list_projects()] == ["Keep"]
    with pytest.raises(NotFound):
        store.get_project(gone)
    summary = store.list_projects()[0]
    assert (summary.num_classes, summary.num_datasets, summary.num_images, summary.num_boxes) == (2, 1, 1, 1)
    assert len(store.boxes_for_image(k_img)) == 1
    assert store.boxes_for_image(g_imgs[0]) == []
    for table, expected in (("images", 1), ("boxes", 1), ("classes", 2), ("datasets", 1), ("uploads", 1)):
        assert _count(store, table) == expected, table


def test_explain_checkpoint_and_job_images(tmp_path):
    """The few public windows onto the database that benchmarks and tests need instead of its connection."""
    path = tmp_path / "meta.duckdb"
    with Store.open(path) as s:
        pid = s.create_project("P", ["a"])
        ids = s.add_images(pid, "d", _rows(3), _upload(3))
        s.insert_boxes([(ids[0], Box(0, 0, 1, 1, 0))])
        plan = s.explain("SELECT id FROM boxes WHERE image_id = ? ORDER BY id", [ids[0]], analyze=True)
        assert "main.boxes" in plan and "Row Groups Scanned" in plan  # what bench/store.py reads from it
        assert "Row Groups Scanned" not in s.explain("SELECT id FROM boxes WHERE image_id = ?", [ids[0]])
        with pytest.raises(ValueError, match="read query"):
            s.explain("DELETE FROM boxes")
        assert len(s.boxes_for_image(ids[0])) == 1

        assert path.with_name("meta.duckdb.wal").exists()
        s.checkpoint()
        assert not path.with_name("meta.duckdb.wal").exists() and path.stat().st_size > 0

        job = s.create_job(pid, "annotate", {}, total=3)
        s.set_review_status([ids[2]], "approved", "ann")
        s.save_predictions(job, 0, None, [(ids[0], [Box(0, 0, 2, 2, 0, 0.5, "model")]), (ids[2], [])],
                           failed=[ids[1]])
        assert s.job_images(job) == [(ids[0], 0, 1, "done"), (ids[1], 0, 0, "error"), (ids[2], 0, 0, "protected")]
        assert s.job_image_count(job) == 3 and s.job_images(job + 1) == []
