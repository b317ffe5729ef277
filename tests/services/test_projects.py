import pytest

from .. import imagegen
from annotator.services import Services
from annotator.types import NotFound, UserError


def test_project_lookup_by_name_and_id(services, project):
    assert services.projects.get_project("Shapes").id == project.id
    assert services.projects.get_project("  sHaPeS ").id == project.id
    assert services.projects.get_project(project.id).name == "Shapes"
    assert services.projects.get_project(str(project.id)).name == "Shapes"
    assert services.projects.get_project(project) is project


def test_project_name_that_looks_like_an_id(services, project):
    numeric = services.projects.create_project("2024", ["a"])
    assert services.projects.get_project("2024").id == numeric.id  # a name wins over an id
    assert services.projects.get_project(str(project.id)).id == project.id


def test_project_not_found_lists_projects(services, project):
    services.projects.create_project("Birds", ["bird"])
    with pytest.raises(NotFound) as e:
        services.projects.get_project("Cars")
    assert "'Cars'" in str(e.value) and "Birds, Shapes" in str(e.value)
    with pytest.raises(NotFound, match="999"):
        services.projects.get_project(999)
    with pytest.raises(UserError, match="Choose a project"):
        services.projects.get_project("  ")


def test_not_found_when_no_projects(services):
    with pytest.raises(NotFound, match="none yet"):
        services.projects.get_project("Anything")


def test_create_project_validates_name(services, project):
    with pytest.raises(UserError, match="already exists"):
        services.projects.create_project(" SHAPES ", ["x"])
    with pytest.raises(UserError, match="Project name must not be empty"):
        services.projects.create_project("   ", ["x"])
    with pytest.raises(UserError, match="control characters"):
        services.projects.create_project("bad\x00name", ["x"])
    with pytest.raises(UserError, match="longer than 100"):
        services.projects.create_project("n" * 101, ["x"])
    assert [p.name for p in services.projects.list_projects()] == ["Shapes"]
    p = services.projects.create_project("  Trimmed  ", ["x"], description="  about  ")
    assert (p.name, p.description) == ("Trimmed", "about")


def _upload_some(services, project, tmp_path, n, dataset="d", seed=1000):
    folder = tmp_path / f"src-{dataset}"
    folder.mkdir()
    for i in range(n):
        (folder / f"{i:02d}.jpg").write_bytes(imagegen.jpeg_bytes(32, 24, seed=seed + i))
    report = services.images.add_images(project, [folder], dataset=dataset)
    assert len(report.added) == n, report.as_dict()


def test_delete_project_requires_exact_name(services, project, tmp_path):
    other = services.projects.create_project("Other", ["x"])
    _upload_some(services, project, tmp_path, 2)
    pdir = services.settings.project_dir(project.id)
    assert any(pdir.rglob("*.jpg"))
    for wrong in ("shapes", "Shape", "", None):
        with pytest.raises(UserError, match="type its exact name"):
            services.projects.delete_project(project, wrong)
    assert services.projects.get_project("Shapes").id == project.id and pdir.is_dir()

    assert services.projects.delete_project("shapes", " Shapes ") == "Shapes"
    assert not pdir.exists()
    assert [p.name for p in services.projects.list_projects()] == ["Other"]
    with pytest.raises(NotFound):
        services.projects.get_project(project.id)
    assert services.projects.get_project(other.id).class_names == ["x"]


def test_list_images_paging_clamps(services, project, tmp_path):
    _upload_some(services, project, tmp_path, 7)
    first = services.images.list_images(project, page=0, page_size=3)
    assert (first.total, first.pages, first.page, len(first.images)) == (7, 3, 0, 3)
    last = services.images.list_images(project, page=2, page_size=3)
    assert [i.rel_path for i in last.images] == ["06.jpg"]
    beyond = services.images.list_images(project, page=99, page_size=3)
    assert beyond.page == 2 and [i.id for i in beyond.images] == [i.id for i in last.images]
    before = services.images.list_images(project, page=-5, page_size=3)
    assert before.page == 0 and [i.id for i in before.images] == [i.id for i in first.images]
    tiny = services.images.list_images(project, page=0, page_size=0)  # page size is at least 1
    assert len(tiny.images) == 1 and tiny.pages == 7
    everything = services.images.list_images(project, page_size=10_000)  # and at most 500
    assert len(everything.images) == 7 and everything.pages == 1
    seen = [i.rel_path for p in range(3) for i in services.images.list_images(project, page=p, page_size=3).images]
    assert seen == [f"{i:02d}.jpg" for i in range(7)]


def test_list_images_empty_project_has_one_page(services, project):
    page = services.images.list_images(project, page=3)
    assert (page.total, page.pages, page.page, page.images) == (0, 1, 0, [])


def test_list_images_filters(services, project, tmp_path):
    _upload_some(services, project, tmp_path, 2, dataset="alpha")
    _upload_some(services, project, tmp_path, 3, dataset="beta", seed=2000)
    assert services.images.list_images(project, dataset="BETA").total == 3
    assert services.images.list_images(project, status="approved").total == 0
    assert services.images.list_images(project, status="unreviewed").total == 5
    with pytest.raises(NotFound, match="'gamma'"):
        services.images.list_images(project, dataset="gamma")
    with pytest.raises(UserError, match="'done'"):
        services.images.list_images(project, status="done")
    assert [d.name for d in services.images.datasets(project)] == ["alpha", "beta"]


def test_add_images_input_errors(services, project, tmp_path):
    with pytest.raises(UserError, match="Nothing to upload"):
        services.images.add_images(project, [])
    with pytest.raises(UserError, match="missing.zip: no such file"):
        services.images.add_images(project, [tmp_path / "missing.zip"])
    img = tmp_path / "a.jpg"
    img.write_bytes(imagegen.jpeg_bytes(16, 16))
    with pytest.raises(UserError, match="must not contain '/'"):
        services.images.add_images(project, [img], dataset="a/b")
    assert services.images.datasets(project) == []


def test_open_drops_stale_staging_and_reopens(settings, tmp_path):
    svc = Services.open(settings)
    try:
        p = svc.projects.create_project("P", ["a"])
        stale = settings.project_dir(p.id) / "staging" / "dead-upload"
        stale.mkdir(parents=True)
        (stale / "half.jpg").write_bytes(b"x")
    finally:
        svc.close()
    svc = Services.open(settings)
    try:
        assert not stale.exists()
        assert svc.projects.get_project("P").class_names == ["a"]
    finally:
        svc.close()
    assert settings.data_dir.is_relative_to(tmp_path)


def test_parallel_upload_of_the_same_image_becomes_a_duplicate(services, project, tmp_path, monkeypatch):
    """Upload B commits an image while upload A is still decoding it: A reports a duplicate, loses nothing."""
    from annotator import ingest

    same = imagegen.jpeg_bytes(64, 48, seed=7)
    zip_a = imagegen.make_zip(tmp_path / "a.zip", {"x.jpg": same, "only_a.jpg": imagegen.jpeg_bytes(64, 48, seed=8)})
    zip_b = imagegen.make_zip(tmp_path / "b.zip", {"y.jpg": same})
    real_prepare = ingest.prepare_upload
    calls = []

    def racing_prepare(*args, **kwargs):
        prepared = real_prepare(*args, **kwargs)
        if not calls:  # only upload A: B runs to completion in the middle of it
            calls.append("b")
            report_b = services.images.add_images(project.name, [zip_b], "b")
            assert report_b.added == ["y.jpg"]
        return prepared

    monkeypatch.setattr(ingest, "prepare_upload", racing_prepare)
    report_a = services.images.add_images(project.name, [zip_a], "a")
    assert report_a.added == ["only_a.jpg"]
    assert [(d.name, d.same_as) for d in report_a.duplicates] == [("x.jpg", "b/y.jpg")]
    assert services.images.list_images(project.name).total == 2
    # The shared file is still there for B's row.
    (b_img,) = services.images.list_images(project.name, dataset="b").images
    assert services.images.image_file(b_img).is_file()


def test_gallery_thumbs_draw_boxes_and_follow_new_results(services, project, tmp_path):
    from PIL import Image

    from annotator.types import Box

    _upload_some(services, project, tmp_path, 2)
    a, b = services.images.list_images(project.name).images
    services.ctx.store.insert_boxes([(a.id, Box(0, 0, a.width / 2, a.height / 2, class_idx=0, source="model",
                                            confidence=0.9))])
    (thumb_a, n_a), (thumb_b, n_b) = services.images.gallery_thumbs([a, b])
    assert (n_a, n_b) == (1, 0)
    assert thumb_b == services.images.thumb_file(b)  # no boxes: the plain thumbnail
    assert thumb_a != services.images.thumb_file(a) and thumb_a.is_file()
    with Image.open(thumb_a) as drawn, Image.open(services.images.thumb_file(a)) as plain:
        assert drawn.size == plain.size
        # the box's top edge is drawn near the top-left corner, the far corner is untouched
        assert drawn.convert("RGB").getpixel((drawn.width // 8, 1)) != plain.convert("RGB").getpixel((drawn.width // 8, 1))
    services.ctx.store.insert_boxes([(a.id, Box(1, 1, 5, 5, class_idx=1, source="human"))])
    ((again, n), _) = services.images.gallery_thumbs([a, b])
    assert n == 2 and again != thumb_a  # a new result is a new picture (no stale cache)
