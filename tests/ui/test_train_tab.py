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
