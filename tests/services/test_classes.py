"""The class table through services: frozen index <-> name; rename keeps the index; delete and reorder
remap every box explicitly or are refused."""

import pytest

from .. import imagegen
from annotator.types import Box, NotFound, UserError


@pytest.fixture
def image_ids(services, project, tmp_path):
    """Three images in dataset "d" of the Shapes project."""
    folder = tmp_path / "upload"
    folder.mkdir()
    for i in range(3):
        (folder / f"im{i}.jpg").write_bytes(imagegen.jpeg_bytes(40, 30, seed=i))
    report = services.images.add_images(project, [folder], dataset="d")
    assert len(report.added) == 3, report.as_dict()
    return [i.id for i in services.images.list_images(project).images]


def _add_boxes(services, image_ids, classes_per_image):
    """One box per class index listed, per image; box i of an image has x1 = i so boxes are told apart."""
    pairs = [(img, Box(float(n), 0.0, float(n) + 5, 5.0, c))
             for img, classes in zip(image_ids, classes_per_image) for n, c in enumerate(classes)]
    return services.ctx.store.insert_boxes(pairs)


def _box_names(services, project, image_ids):
    """{box id: class name} for every box of the images, with the project's CURRENT class table."""
    names = services.projects.get_project(project.id).class_names
    return {b.id: names[b.class_idx] for img in image_ids for b in services.ctx.store.boxes_for_image(img)}


def _box_indices(services, image_ids):
    return {b.id: b.class_idx for img in image_ids for b in services.ctx.store.boxes_for_image(img)}


def test_create_keeps_class_order(services):
    p = services.projects.create_project("Animals", "zebra\n\n  ant  \nmoose\n")
    assert [(c.index, c.name) for c in p.classes] == [(0, "zebra"), (1, "ant"), (2, "moose")]
    assert services.projects.get_project("animals").class_names == ["zebra", "ant", "moose"]


@pytest.mark.parametrize(
    "classes,fragments",
    [
        (["cat", "dog", "Cat"], ["'Cat'", "twice", "0", "2"]),
        (["cat", "   ", "dog"], ["position 1", "empty"]),
        (["cat", ""], ["position 1", "empty"]),
        ([], ["at least one class"]),
    ],
)
def test_create_refuses_bad_class_lists(services, classes, fragments):
    with pytest.raises(UserError) as e:
        services.projects.create_project("Bad", classes)
    for fragment in fragments:
        assert fragment in str(e.value)
    assert services.projects.list_projects() == []


def test_rename_keeps_index_and_boxes(services, project, image_ids):
    ids = _add_boxes(services, image_ids, [[1, 1], [0], []])
    p = services.projects.rename_class(project, "square", "box")
    assert p.class_names == ["circle", "box", "triangle"]
    p = services.projects.rename_class(project, 0, "Circle")  # case change of itself is fine
    assert p.class_names == ["Circle", "box", "triangle"]
    assert _box_indices(services, image_ids) == dict(zip(ids, [1, 1, 0]))


def test_rename_refuses_taken_and_empty_names(services, project):
    with pytest.raises(UserError, match="'TRIANGLE'.*class 2"):
        services.projects.rename_class(project, "circle", "TRIANGLE")
    with pytest.raises(UserError, match="empty"):
        services.projects.rename_class(project, "circle", "  ")
    with pytest.raises(NotFound, match="hexagon"):
        services.projects.rename_class(project, "hexagon", "x")
    with pytest.raises(NotFound, match="index 7"):
        services.projects.rename_class(project, 7, "x")
    assert services.projects.get_project(project.id).class_names == ["circle", "square", "triangle"]


def test_add_appends(services, project):
    p = services.projects.add_classes(project, "star\nhexagon")
    assert [(c.index, c.name) for c in p.classes] == [
        (0, "circle"), (1, "square"), (2, "triangle"), (3, "star"), (4, "hexagon")]


def test_add_refuses_existing_or_duplicate_names(services, project):
    with pytest.raises(UserError, match="'Square' already exists"):
        services.projects.add_classes(project, ["star", "Square"])
    with pytest.raises(UserError, match="'STAR' is listed twice"):
        services.projects.add_classes(project, ["star", "STAR"])
    with pytest.raises(UserError):
        services.projects.add_classes(project, "")
    assert services.projects.get_project(project.id).class_names == ["circle", "square", "triangle"]


def test_delete_class_with_boxes_refused_by_default(services, project, image_ids):
    ids = _add_boxes(services, image_ids, [[0, 1, 2], [1], [2]])
    before = _box_indices(services, image_ids)
    with pytest.raises(UserError) as e:
        services.projects.delete_class(project, "square")
    assert "'square'" in str(e.value) and "2 box" in str(e.value) and "nothing was changed" in str(e.value)
    assert services.projects.get_project(project.id).class_names == ["circle", "square", "triangle"]
    assert _box_indices(services, image_ids) == before and len(before) == len(ids)


def test_delete_unused_class_shifts_later_boxes(services, project, image_ids):
    ids = _add_boxes(services, image_ids, [[0, 2], [2], []])
    names_before = _box_names(services, project, image_ids)
    out = services.projects.delete_class(project, "square")  # no boxes: default is fine
    assert out["deleted_class"] == "square" and out["deleted"] == 0
    assert services.projects.get_project(project.id).class_names == ["circle", "triangle"]
    assert _box_indices(services, image_ids) == dict(zip(ids, [0, 1, 1]))
    assert _box_names(services, project, image_ids) == names_before


def test_delete_class_move_boxes(services, project, image_ids):
    # boxes: circle, square, triangle on image 0; square on image 1; triangle on image 2
    ids = _add_boxes(services, image_ids, [[0, 1, 2], [1], [2]])
    out = services.projects.delete_class(project, "circle", boxes="move", move_to="triangle")
    assert services.projects.get_project(project.id).class_names == ["square", "triangle"]
    # circle -> triangle (now index 1); square 1 -> 0; triangle 2 -> 1
    assert _box_indices(services, image_ids) == dict(zip(ids, [1, 0, 1, 0, 1]))
    assert out["deleted"] == 0 and out["remapped"] == 5
    assert len(_box_indices(services, image_ids)) == 5


def test_delete_class_move_to_earlier_class(services, project, image_ids):
    ids = _add_boxes(services, image_ids, [[0, 1, 2], [2], []])
    services.projects.delete_class(project, 1, boxes="move", move_to=0)
    assert services.projects.get_project(project.id).class_names == ["circle", "triangle"]
    assert _box_indices(services, image_ids) == dict(zip(ids, [0, 0, 1, 1]))


def test_delete_class_move_needs_valid_target(services, project, image_ids):
    _add_boxes(services, image_ids, [[0, 1]])
    before = _box_indices(services, image_ids)
    with pytest.raises(UserError, match="Choose the class"):
        services.projects.delete_class(project, "square", boxes="move")
    with pytest.raises(UserError, match="class being deleted"):
        services.projects.delete_class(project, "square", boxes="move", move_to="Square")
    with pytest.raises(NotFound, match="hexagon"):
        services.projects.delete_class(project, "square", boxes="move", move_to="hexagon")
    with pytest.raises(UserError, match="'refuse', 'delete' or 'move'"):
        services.projects.delete_class(project, "square", boxes="keep")
    assert services.projects.get_project(project.id).class_names == ["circle", "square", "triangle"]
    assert _box_indices(services, image_ids) == before


def test_delete_class_delete_boxes(services, project, image_ids):
    ids = _add_boxes(services, image_ids, [[0, 1, 2], [1, 1], [2]])
    out = services.projects.delete_class(project, "square", boxes="delete")
    assert out["deleted"] == 3
    assert services.projects.get_project(project.id).class_names == ["circle", "triangle"]
    remaining = _box_indices(services, image_ids)
    assert remaining == {ids[0]: 0, ids[2]: 1, ids[5]: 1}
    assert services.ctx.store.class_box_counts(project.id) == {0: 1, 1: 2}


def test_cannot_delete_only_class(services):
    p = services.projects.create_project("Solo", ["thing"])
    with pytest.raises(UserError, match="only class"):
        services.projects.delete_class(p, "thing", boxes="delete")


def test_reorder_boxes_keep_their_class_name(services, project, image_ids):
    ids = _add_boxes(services, image_ids, [[0, 1, 2], [2, 2, 0], [1]])
    names_before = _box_names(services, project, image_ids)
    out = services.projects.reorder_classes(project, ["Triangle", "circle", "square"])
    # the project's spelling is kept, whatever case the order was typed in
    assert out["order"] == ["triangle", "circle", "square"]
    assert services.projects.get_project(project.id).class_names == ["triangle", "circle", "square"]
    assert _box_names(services, project, image_ids) == names_before
    assert _box_indices(services, image_ids) == dict(zip(ids, [1, 2, 0, 0, 0, 1, 2]))


def test_reorder_swap_two(services, project, image_ids):
    ids = _add_boxes(services, image_ids, [[0, 2]])
    services.projects.reorder_classes(project, "triangle\nsquare\ncircle")
    assert _box_indices(services, image_ids) == {ids[0]: 2, ids[1]: 0}


@pytest.mark.parametrize(
    "order,fragments",
    [
        (["square", "circle"], ["missing: triangle"]),
        (["square", "circle", "triangle", "hexagon"], ["not classes of this project: hexagon"]),
        (["square", "circle", "hexagon"], ["missing: triangle", "hexagon"]),
        (["square", "circle", "Circle"], ["listed twice"]),
    ],
)
def test_reorder_refuses_missing_or_unknown(services, project, image_ids, order, fragments):
    _add_boxes(services, image_ids, [[0, 1, 2]])
    before = _box_indices(services, image_ids)
    with pytest.raises(UserError) as e:
        services.projects.reorder_classes(project, order)
    for fragment in fragments:
        assert fragment in str(e.value)
    assert services.projects.get_project(project.id).class_names == ["circle", "square", "triangle"]
    assert _box_indices(services, image_ids) == before


def test_project_details_counts_boxes_per_class(services, project, image_ids):
    _add_boxes(services, image_ids, [[0, 2], [2], [2]])
    d = services.projects.project_details(project)
    assert [(c.index, c.name, c.boxes) for c in d.classes] == [(0, "circle", 1), (1, "square", 0), (2, "triangle", 3)]
    assert d.num_images == 3 and [ds.name for ds in d.datasets] == ["d"]
