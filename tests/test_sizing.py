"""The image size from the data: small objects get a larger size, never below the base's, never above the
images or the device's cap; no boxes yet: the images' size."""

from __future__ import annotations

from annotator.sizing import SizeProfile, choose_imgsz


def test_small_boxes_in_larger_images_get_a_larger_size():
    # 800x600 scenes whose smallest tenth of boxes are 2.5% of the long side (20 px): 12 px needs 480
    size, why = choose_imgsz(SizeProfile(100, 800, 500, 0.025, "labelled"), base=320, device="cpu")
    assert size == 480 and "480" in why and "320" in why and "12" in why


def test_never_below_the_base_nor_above_the_images_or_the_cap():
    assert choose_imgsz(SizeProfile(10, 800, 50, 0.2, "labelled"), base=320)[0] == 320  # big boxes: the base
    assert choose_imgsz(SizeProfile(10, 400, 50, 0.005, "labelled"), base=320)[0] == 416  # images only 400 px
    size, why = choose_imgsz(SizeProfile(10, 4000, 50, 0.002, "labelled"), base=640, device="cpu")
    assert size == 640 and "CPU cap of 640" in why
    assert choose_imgsz(SizeProfile(10, 4000, 50, 0.002, "labelled"), base=640, device="gpu")[0] == 1280


def test_without_confirmed_boxes_the_base_models_size():
    size, why = choose_imgsz(SizeProfile(10, 800, 0, None, ""), base=320, device="cpu")
    assert size == 320 and "base model's own size" in why
    assert choose_imgsz(SizeProfile(10, 300, 0, None, ""), base=None)[0] == 320  # no base: the images', capped
    assert choose_imgsz(SizeProfile(10, 3000, 0, None, ""), base=None, device="cpu")[0] == 640
    assert choose_imgsz(SizeProfile(0, 0, 0, None, ""), base=320)[0] == 320


def test_sizes_are_multiples_of_32():
    for r in (0.3, 0.05, 0.013, 0.007):
        for base in (None, 320, 416, 640):
            size, _ = choose_imgsz(SizeProfile(5, 1000, 5, r, "labelled"), base=base, device="gpu")
            assert size % 32 == 0 and 32 <= size <= 1280


def test_epochs_from_the_number_of_training_images():
    from annotator.sizing import epochs_for

    # on a GPU about 3000 image-passes, 20-100 epochs: a small set gets many passes, so enough optimizer steps
    assert epochs_for(30, "gpu") == (100, 50)
    assert epochs_for(60, "gpu") == (50, 25)
    assert epochs_for(10_000, "gpu") == (20, 15)
    # on a CPU about 1200, 10-60 epochs (a round in minutes); patience never under 15
    assert epochs_for(30) == epochs_for(30, "cpu") == (40, 20)
    assert epochs_for(10) == (60, 30)
    assert epochs_for(10_000) == (10, 15)
