"""The Train tab's pure renderers: where a model forgot a dataset, in the models table and the note under it."""

from __future__ import annotations

from annotator.ui.tab_train import forgetting_note, per_dataset_cell


def _model(name, per_dataset, worse_on):
    return {"name": name, "per_dataset": per_dataset, "worse_on": worse_on}


def test_per_dataset_scores_beside_the_base_and_the_forgotten_one_marked():
    m = _model("ft-4", [
        {"dataset": "demo", "val_images": 9, "mAP50-95": 0.52, "base_mAP50-95": 0.8, "change": -0.28},
        {"dataset": "street", "val_images": 12, "mAP50-95": 0.81, "base_mAP50-95": 0.74, "change": 0.07},
        {"dataset": "night", "val_images": 3, "mAP50-95": 0.4, "base_mAP50-95": None, "change": None},
    ], ["demo"])
    assert per_dataset_cell(m) == "demo 0.520 (0.800) ▼ forgot; street 0.810 (0.740) ▲; night 0.400"
    assert per_dataset_cell(_model("demo-shapes", [], [])) == ""
    note = forgetting_note({"models": [m, _model("ft-5", [], [])]})
    assert note.startswith("- **ft-4** scores lower than its base on 'demo'") and "Replay" in note
    assert "ft-5" not in note and forgetting_note({"models": []}) == ""


def test_edits_plots_one_bar_per_model_in_the_order_they_were_made():
    from annotator.ui.tab_train import edits_plots, render_edits

    assert edits_plots({"rounds": []}) == (None, None)
    st = {"rounds": [
        {"model_id": 1, "model": "demo-shapes", "images": 40, "edits_per_image": 3.2, "acceptance": 0.05,
         "deleted": 80, "added": 2, "reclassed": 30, "adjusted": 16},
        {"model_id": 2, "model": "demo-shapes-ft2", "images": 40, "edits_per_image": 0.9, "acceptance": 0.45,
         "deleted": 10, "added": 6, "reclassed": 8, "adjusted": 12},
        {"model_id": 9, "model": None, "images": 3, "edits_per_image": 0.0, "acceptance": 1.0,
         "deleted": 0, "added": 0, "reclassed": 0, "adjusted": 0},
    ]}
    edits, accepted = edits_plots(st)
    assert list(edits["model"]) == ["1. demo-shapes", "2. demo-shapes-ft2", "3. (model removed)"]
    assert list(edits["edits per image"]) == [3.2, 0.9, 0.0] and list(accepted["accepted %"]) == [5.0, 45.0, 100.0]
    rendered, e2, a2 = render_edits(st)
    assert list(e2["edits per image"]) == [3.2, 0.9, 0.0] and len(rendered["data"]) == 3
