"""The difference hash and the most-informative review order (annotator/phash.py), on generated scenes."""

from __future__ import annotations

import io

from PIL import Image, ImageEnhance

from annotator.demo import scenes
from annotator.phash import FAR_BITS, dhash, hamming, informative_order


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue()))


def test_copies_are_near_and_other_scenes_are_far():
    base, _ = scenes.scene(11)
    h = dhash(base)
    copies = [_jpeg(base, 40), base.resize((320, 240)), base.resize((1280, 960)),
              ImageEnhance.Brightness(base).enhance(1.15), base.convert("L")]
    assert all(hamming(h, dhash(c)) <= 6 for c in copies), [hamming(h, dhash(c)) for c in copies]
    others = [hamming(h, dhash(scenes.scene(s)[0])) for s in range(20, 40)]
    assert min(others) > 12 and sum(others) / len(others) > FAR_BITS * 0.8, others
    assert 0 <= h < 2 ** 64 and dhash(base) == h  # 64 bits, deterministic


def test_a_distinct_image_comes_before_near_duplicates_of_approved_ones():
    approved = dhash(scenes.scene(1)[0])
    dup_a = dhash(_jpeg(scenes.scene(1)[0], 50))
    dup_b = dhash(ImageEnhance.Brightness(scenes.scene(1)[0]).enhance(0.9))
    distinct = dhash(scenes.scene(2)[0])
    # equally uncertain: the one unlike what is approved first, then the near-duplicates
    order = informative_order([10, 11, 12], [0.4, 0.4, 0.4], [dup_a, dup_b, distinct], [approved])
    assert order[0] == 12 and sorted(order[1:]) == [10, 11]
    # among equally novel images uncertainty decides; a near-duplicate needs far more doubt to come first
    other = dhash(scenes.scene(5)[0])
    assert informative_order([12, 13], [0.9, 0.3], [distinct, other], [approved]) == [13, 12]
    assert informative_order([10, 12], [0.05, 0.95], [dup_a, distinct], [approved]) == [12, 10]


def test_each_pick_makes_its_own_near_duplicates_less_novel():
    """Nothing approved yet: three frames of scene A and one of scene B, the A frames a little more uncertain.
    Uncertainty alone would take all three A frames first; the order takes one A, then B."""
    a = scenes.scene(3)[0]
    frames = [dhash(a), dhash(_jpeg(a, 60)), dhash(a.resize((600, 450))), dhash(scenes.scene(4)[0])]
    order = informative_order([1, 2, 3, 4], [0.30, 0.31, 0.32, 0.40], frames, [])
    assert order[:2] == [1, 4] and sorted(order) == [1, 2, 3, 4]


def test_unknown_hashes_and_images_without_machine_boxes_still_get_a_place():
    assert informative_order([], [], [], []) == []
    order = informative_order([5, 6, 7], [None, 0.9, 0.2], [None, 3, None], [3])
    assert sorted(order) == [5, 6, 7] and order[-1] == 6  # 6: confident and identical to an approved image
