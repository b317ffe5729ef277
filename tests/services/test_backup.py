"""Backup and restore: a round trip compares every project, image (its file's bytes), box, review state, split,
model and export between the source and the restored data folder; a tampered tar is refused naming the
member, with nothing placed."""

from __future__ import annotations

import hashlib
import json
import tarfile
import zipfile

import pytest

from annotator.demo import scenes
from annotator.services import Services
from annotator.services.backup import restore
from annotator.settings import Settings
from annotator.types import UserError

from ..imagegen import jpeg_bytes


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _zip(tmp_path, name, seeds):
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for s in seeds:
            zf.writestr(f"{name}/{s}.jpg", jpeg_bytes(120, 90, seed=s))
    return archive


def _world(services, tmp_path):
    """Two projects, two datasets, boxes by a person and by import, every review state, stored splits, a model,
    an export."""
    p = services.projects.create_project("Street", ["car", "person", "bike"], "cams")
    q = services.projects.create_project("Yard", ["circle"])
    services.images.add_images("Street", [_zip(tmp_path, "north", range(6))], dataset="north", user="ann")
    services.images.add_images("Street", [_zip(tmp_path, "south", range(10, 14))], dataset="south", user="bob")
    services.images.add_images("Yard", [_zip(tmp_path, "yard", range(20, 23))], dataset="yard")
    imgs = services.images.list_images("Street", page_size=100).images
    for k, img in enumerate(imgs[:5]):
        v = services.review.load_image("Street", img.id)["version"]
        boxes = [{"class_idx": k % 3, "x1": 3.25 + k, "y1": 4.5, "x2": 50.125, "y2": 60.0 + k},
                 {"class": "person", "x1": 10, "y1": 12, "x2": 30, "y2": 40}]
        services.review.save_image("Street", img.id, boxes, v, user="ann")
    services.review.set_review_status("Street", [imgs[0].id, imgs[1].id], "approved", user="ann")
    services.review.set_review_status("Street", [imgs[2].id], "rejected", user="bob")
    services.splits.configure_splits("Street", 0.5, 0.5, 0.0, seed=3)
    services.splits.set_split("Street", "test", image_ids=[imgs[3].id])
    services.models.add_model("Street", scenes.DEMO_MODEL_PATH, name="shapes")
    services.transfer.export_dataset("Street", "yolo")
    return p, q


def _state(services) -> dict:
    """Everything a person sees, keyed by names and paths (not ids), with every stored file's SHA-256."""
    s = services.settings
    out = {}
    for summary in services.projects.list_projects():
        p = services.projects.get_project(summary.name)
        images = {}
        for img in services.images.list_images(p.id, page_size=500).images:
            boxes = [(b.class_idx, b.x1, b.y1, b.x2, b.y2, b.confidence, b.source, b.created_by)
                     for b in services.ctx.store.boxes_for_image(img.id)]
            images[(img.dataset, img.rel_path)] = {
                "sha": img.sha256, "size": (img.width, img.height), "status": img.status, "split": img.split,
                "by": img.reviewed_by, "boxes": boxes, "file": _sha(s.project_file(p.id, img.file)),
                "thumb": _sha(s.project_file(p.id, img.thumb))}
        models = {m.name: (m.sha256, tuple(m.class_names), m.source, _sha(s.project_file(p.id, m.file)))
                  for m in services.models.list_models(p.id)}
        exports = [(e["format"], e["file"], _sha(s.project_file(p.id, e["file"])))
                   for e in services.transfer.exports(p.id)]
        out[p.name] = {"classes": p.class_names, "description": p.description, "images": images,
                       "models": models, "exports": exports, "splits": services.ctx.store.split_config(p.id)}
    return out


@pytest.fixture
def world(services, tmp_path):
    _world(services, tmp_path)
    return services


def test_backup_and_restore_give_back_everything(world, tmp_path):
    before = _state(world)
    assert len(before["Street"]["images"]) == 10 and before["Street"]["models"] and before["Street"]["exports"]
    result = world.backup.backup(out=tmp_path / "b.tar")
    assert result["rows"]["images"] == 13 and result["rows"]["boxes"] == 10 and result["missing_count"] == 0
    with tarfile.open(tmp_path / "b.tar") as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
        sums = tar.extractfile("SHA256SUMS").read().decode().splitlines()
    assert names[0] == "metadata.duckdb" and names[-2:] == ["manifest.json", "SHA256SUMS"]
    assert manifest["rows"] == result["rows"] and manifest["version"] and manifest["created_at"]
    assert len(sums) == len(names) - 1  # every member but the sums themselves
    assert not list(world.settings.backups_dir.iterdir())  # the snapshot's temp copy is gone

    restored = restore(tmp_path / "b.tar", tmp_path / "restored")
    assert restored["rows"] == result["rows"]
    again = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "restored"), "ANNOTATOR_DEMO": "0"}))
    try:
        assert _state(again) == before
        assert again.fsck.fsck()["clean"]
        # The restored database goes on where the source left off (sequences included).
        new = again.projects.create_project("After", ["x"])
        assert new.id == max(p.id for p in world.projects.list_projects()) + 1
    finally:
        again.close()


def test_restore_refuses_a_non_empty_folder_unless_forced(world, tmp_path):
    world.settings.demo_marker_path.write_text("created\n")  # the Demo was deleted: it must not come back
    world.backup.backup(out=tmp_path / "b.tar")
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not empty"):
        restore(tmp_path / "b.tar", target)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    restore(tmp_path / "b.tar", target, force=True)
    assert (target / "metadata.duckdb").exists() and (target / "notes.txt").read_text() == "mine"
    assert (target / ".demo-created").read_text() == "created\n"


def test_a_tampered_backup_is_refused_naming_the_member(world, tmp_path):
    world.backup.backup(out=tmp_path / "b.tar")
    with tarfile.open(tmp_path / "b.tar") as tar:
        member = next(m for m in tar.getmembers() if "/images/" in m.name)
    raw = bytearray((tmp_path / "b.tar").read_bytes())
    raw[member.offset_data + member.size // 2] ^= 0x01  # one bit of one image
    (tmp_path / "bad.tar").write_bytes(bytes(raw))
    target = tmp_path / "target"
    with pytest.raises(UserError, match=f"member {member.name} does not match its SHA-256"):
        restore(tmp_path / "bad.tar", target)
    assert list(target.iterdir()) == []  # nothing placed, the work folder gone

    cut = tmp_path / "cut.tar"  # a copy cut short: refused too
    cut.write_bytes(bytes(raw[: member.offset_data + 10]))
    with pytest.raises(UserError):
        restore(cut, tmp_path / "target2")
    assert list((tmp_path / "target2").iterdir()) == []


def test_backup_lists_what_was_missing_and_refuses_a_folder_or_a_full_disk(world, tmp_path, monkeypatch):
    s = world.settings
    img = world.images.list_images("Yard").images[0]
    s.project_file(img.project_id, img.file).unlink()
    result = world.backup.backup(out=tmp_path / "b.tar")
    assert result["missing"] == [f"projects/{img.project_id}/{img.file}"]
    with pytest.raises(UserError, match="is a folder"):
        world.backup.backup(out=tmp_path)
    from annotator import diskspace

    monkeypatch.setattr(diskspace, "free_bytes", lambda folder: 1000)
    with pytest.raises(UserError, match="Not enough disk space to write the backup c.tar"):
        world.backup.backup(out=tmp_path / "c.tar")
    assert not (tmp_path / "c.tar").exists() and not list(s.backups_dir.iterdir())


def test_discard_takes_only_a_backups_name(services):
    with pytest.raises(UserError, match="not the name of a backup"):
        services.backup.discard_backup("../metadata.duckdb")
    assert services.settings.db_path.exists()


def test_files_added_after_the_snapshot_stay_out(world, tmp_path, monkeypatch):
    """Writes go on once the snapshot is taken: the backup holds the snapshot's state and exactly its files, so
    the restored folder is consistent (fsck clean) and lacks the late upload."""
    store = world.ctx.store
    taken = store.snapshot_database

    def snapshot_then_upload(dest):
        counts = taken(dest)
        world.images.add_images("Yard", [_zip(tmp_path, "late", range(40, 43))], dataset="late")
        return counts

    monkeypatch.setattr(store, "snapshot_database", snapshot_then_upload)
    result = world.backup.backup(out=tmp_path / "b.tar")
    assert world.images.list_images("Yard").total == 6 and result["rows"]["images"] == 13
    restore(tmp_path / "b.tar", tmp_path / "restored")
    again = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / "restored"), "ANNOTATOR_DEMO": "0"}))
    try:
        assert again.images.list_images("Yard").total == 3
        assert again.fsck.fsck()["clean"]
    finally:
        again.close()
