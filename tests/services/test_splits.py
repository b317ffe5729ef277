"""The split manager: deterministic, seeded, ratio-following, stable when images arrive, editable in bulk;
and the export writes the stored splits."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from annotator.services import Services
from annotator.settings import Settings
from annotator.splits import assign_splits, parse_ratios
from annotator.types import NotFound, UserError

from ..imagegen import jpeg_bytes

RATIOS = {"train": 0.8, "val": 0.2, "test": 0.0}


def _images(n: int, first: int = 0) -> list[tuple[int, str]]:
    return [(i, f"{i * 7919:064x}") for i in range(first, first + n)]


def _add(services: Services, project, tmp_path: Path, n: int, first_seed: int = 0, dataset: str = "d"):
    folder = tmp_path / f"{dataset}-{first_seed}"
    folder.mkdir()
    for i in range(n):
        (folder / f"img_{first_seed + i:03d}.jpg").write_bytes(jpeg_bytes(48, 32, seed=first_seed + i))
    services.images.add_images(project, [(folder, dataset)], dataset=dataset)


def _splits(services: Services, project) -> dict[str, str]:
    return {sha: split for _, sha, split in services.ctx.store.image_splits(project.id)}


def test_assignment_follows_the_ratios_even_for_a_handful_of_images():
    for n, want in ((5, {"train": 4, "val": 1}), (10, {"train": 8, "val": 2}), (101, {"train": 81, "val": 20})):
        got = assign_splits({}, _images(n), RATIOS, seed=0)
        counts = {s: list(got.values()).count(s) for s in ("train", "val", "test")}
        assert counts == {**want, "test": 0}, n
    three = assign_splits({}, _images(30), {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)
    assert sorted(list(three.values()).count(s) for s in ("train", "val", "test")) == [6, 6, 18]


def test_assignment_is_deterministic_and_seeded():
    imgs = _images(60)
    a = assign_splits({}, imgs, RATIOS, seed=0)
    assert assign_splits({}, list(reversed(imgs)), RATIOS, seed=0) == a  # insertion order does not matter
    b = assign_splits({}, imgs, RATIOS, seed=1)
    assert a != b and sorted(a.values()) == sorted(b.values())  # another seed: other images, same counts


def test_new_images_fill_the_deficit_and_old_ones_keep_their_split():
    got = assign_splits({"train": 10, "val": 0}, _images(5), RATIOS, seed=0)
    assert sorted(got.values()) == ["train", "train", "val", "val", "val"]  # 15 at 80/20: 3 val, all new ones


@pytest.mark.parametrize("ratios, match", [((-1, 20, 0), "train ratio must be a non-negative"),
                                           ((0, 0, 0), "must not all be 0"),
                                           (("x", 20, 0), "train ratio must be a number, got 'x'"),
                                           ((80, float("nan"), 0), "val ratio")])
def test_bad_ratios_are_refused(ratios, match):
    with pytest.raises(UserError, match=match):
        parse_ratios(*ratios)


def test_percentages_and_fractions_are_the_same_ratios():
    assert parse_ratios(80, 20, 0) == parse_ratios(0.8, 0.2, 0) == RATIOS


def test_stored_splits_are_stable_when_new_images_arrive(services, project, tmp_path):
    _add(services, project, tmp_path, 20)
    r = services.splits.configure_splits(project, 80, 20, 0, seed=5)
    assert r["assigned"] == 20 and r["config"] == {"train": 0.8, "val": 0.2, "test": 0.0, "seed": 5}
    assert {k: v["images"] for k, v in r["splits"].items()} == {"train": 16, "val": 4}
    before = _splits(services, project)

    _add(services, project, tmp_path, 10, first_seed=100)
    assert services.splits.assign_missing_splits(project) == 10
    after = _splits(services, project)
    assert {sha: after[sha] for sha in before} == before  # old images keep theirs
    assert sorted(after.values()).count("val") == 6 and None not in after.values()  # 30 at 80/20
    assert services.splits.assign_missing_splits(project) == 0  # nothing left to assign


def test_the_same_images_get_the_same_splits_in_another_data_folder(tmp_path):
    results = []
    for name in ("a", "b"):
        svc = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(tmp_path / name / "data")}))
        try:
            p = svc.projects.create_project("P", ["x"])
            _add(svc, p, tmp_path / name, 12)
            svc.splits.configure_splits(p, 70, 20, 10, seed=42)
            results.append(_splits(svc, p))
        finally:
            svc.close()
    assert results[0] == results[1]
    assert sorted(results[0].values()).count("test") == 1 and sorted(results[0].values()).count("val") == 3


def test_reassign_starts_over_and_bulk_edit_moves_images(services, project, tmp_path):
    _add(services, project, tmp_path, 10, dataset="day")
    _add(services, project, tmp_path, 5, first_seed=50, dataset="night")
    services.splits.configure_splits(project, 80, 20, 0)
    r = services.splits.configure_splits(project, 0, 0, 1, reassign=True)
    assert r["assigned"] == 15 and set(_splits(services, project).values()) == {"test"}

    r = services.splits.set_split(project, "val", dataset="night")
    assert r["moved"] == 5 and r["splits"]["val"]["images"] == 5
    ids = [i.id for i in services.images.list_images(project, dataset="day").images[:3]]
    r = services.splits.set_split(project, "train", image_ids=ids)
    assert r["moved"] == 3 and r["splits"]["train"]["images"] == 3 and r["splits"]["test"]["images"] == 7
    services.ctx.store.set_review_status(ids[:2], "approved", "ann")
    r = services.splits.set_split(project, "val", status="approved")
    assert r["moved"] == 2 and r["splits"]["val"]["approved"] == 2

    with pytest.raises(UserError, match="split must be one of train, val, test, got 'holdout'"):
        services.splits.set_split(project, "holdout")
    with pytest.raises(NotFound, match="no dataset named 'dusk'"):
        services.splits.set_split(project, "val", dataset="dusk")
    with pytest.raises(NotFound, match="no image"):
        services.splits.set_split(project, "val", image_ids=[999_999])
    with pytest.raises(UserError, match="seed must be a whole number"):
        services.splits.configure_splits(project, 80, 20, 0, seed="abc")


def test_export_reads_splits_and_never_stores_them(services, project, tmp_path):
    _add(services, project, tmp_path, 10)
    services.splits.configure_splits(project, 60, 40, 0, seed=9)
    stored = {i.id: i.split for i in services.images.list_images(project).images}
    services.ctx.store.set_review_status(list(stored), "approved", "ann")
    _add(services, project, tmp_path, 5, first_seed=200)  # new: no split yet
    new_ids = [i.id for i in services.images.list_images(project).images if i.id not in stored]
    services.ctx.store.set_review_status(new_ids, "approved", "ann")

    r = services.transfer.export_dataset(project, "yolo", val_ratio=0.0)
    assert any("5 image(s) had no stored split" in n and "Nothing was stored" in n for n in r["notes"])
    by_id = {i.id: i for i in services.images.list_images(project).images}
    assert sorted(r["split_assigned"]) == sorted(f"{by_id[i].dataset}/{by_id[i].rel_path}" for i in new_ids)
    after = {i: img.split for i, img in by_id.items()}
    assert {i: after[i] for i in stored} == stored and not any(after[i] for i in new_ids)  # an export writes nothing
    with zipfile.ZipFile(r["file"]) as zf:
        exported_val = sum(1 for n in zf.namelist() if n.startswith("images/val/"))
    assert exported_val == 6 == r["per_split"]["val"]  # the project's 60/40, not the export's val_ratio 0
    # Storing them later (an explicit split-manager action) gives the same splits the export used.
    assert services.splits.assign_missing_splits(project) == 5
    assert sorted(i.split for i in services.images.list_images(project).images).count("val") == 6


def test_too_few_validation_images_are_warned_about(services, tmp_path):
    from annotator.services.splits import val_warning

    assert val_warning(8, 40) is None and val_warning(20, 200) is None
    assert "rest on 3 image(s) of 40" in val_warning(3, 40)
    assert "give val at least 30" in val_warning(10, 300)  # 10% of 300
    from .. import imagegen

    p = services.projects.create_project("Few", ["a"])
    folder = tmp_path / "few"
    folder.mkdir()
    for i in range(10):
        (folder / f"f{i}.jpg").write_bytes(imagegen.jpeg_bytes(64, 64, seed=i))
    services.images.add_images(p, [folder], dataset="d")
    ids = [i.id for i in services.ctx.store.list_images(p.id, offset=0, limit=20)]
    services.review.set_review_status(p, ids, "approved")
    services.splits.configure_splits(p, 80, 20, 0)
    summary = services.splits.split_summary(p)
    assert summary["splits"]["val"]["approved"] == 2 and "rest on 2 image(s) of 10" in summary["warning"]
