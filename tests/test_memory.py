"""Memory bounds (issue 12): the decoded-pixel budget, zip members that inflate past their declared size,
the worker's prefetch held to its budget of decoded bytes, and the app's RSS under concurrent opens of
huge PNGs (a sampled child process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
import zipfile
from pathlib import Path

import numpy as np
import pytest
from huey import MemoryHuey
from PIL import Image

from . import imagegen
from annotator import ingest, pixels
from annotator.pixels import PixelBudget
from jobs.annotate import run_annotation
from jobs.protocol import JobChannel

REPO = Path(__file__).resolve().parent.parent


# ---- the budget primitive ---------------------------------------------------------------------------------

def test_budget_lets_only_what_fits_run_at_once():
    budget = PixelBudget(100)
    live, most = [0], [0]
    lock = threading.Lock()

    def work():
        with budget.hold(40):
            with lock:
                live[0] += 1
                most[0] = max(most[0], live[0])
            time.sleep(0.03)
            with lock:
                live[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert most[0] == 2 and budget.peak == 80 and budget.used == 0


def test_an_item_larger_than_the_budget_runs_alone_and_does_not_deadlock():
    budget = PixelBudget(100)
    with budget.hold(500):
        assert budget.used == 500
        got = threading.Event()
        t = threading.Thread(target=lambda: (budget.acquire(1), got.set()))
        t.start()
        assert not got.wait(0.1)  # even a small one waits while the oversized item is held
    assert got.wait(2)
    t.join(2)
    assert budget.used == 1


def test_budget_is_released_when_the_work_fails():
    budget = PixelBudget(100)
    with pytest.raises(RuntimeError):
        with budget.hold(90):
            raise RuntimeError("decode failed")
    assert budget.used == 0
    with budget.hold(100):  # the whole budget is free again
        assert budget.used == 100


def test_a_waiting_big_item_is_not_overtaken_by_later_small_ones():
    budget = PixelBudget(100)
    order = []
    budget.acquire(60)
    big = threading.Thread(target=lambda: (budget.acquire(80), order.append("big"), budget.release(80)))
    big.start()
    time.sleep(0.05)
    small = threading.Thread(target=lambda: (budget.acquire(10), order.append("small"), budget.release(10)))
    small.start()  # 60 + 10 fits, but the big one came first
    time.sleep(0.05)
    assert order == []
    budget.release(60)
    big.join(2)
    small.join(2)
    assert order == ["big", "small"]


def test_a_small_item_does_not_queue_behind_a_waiting_big_one():
    budget = PixelBudget(1600)
    budget.acquire(1000)
    waiting = threading.Thread(target=lambda: (budget.acquire(1000), budget.release(1000)))
    waiting.start()
    time.sleep(0.05)
    got = threading.Event()
    small = threading.Thread(target=lambda: (budget.acquire(100), got.set()))  # 1/16 of the budget
    small.start()
    assert got.wait(2) and budget.used == 1100  # it fits now: the big one waiting ahead does not hold it up
    budget.release(1100)
    waiting.join(2)
    small.join(2)
    assert budget.used == 0


def test_settings_set_the_decode_budget(settings):
    from annotator.services import Services

    old = pixels.DECODE.limit
    try:
        s = settings.with_overrides(decode_budget_mb=5)
        Services.open(s).close()
        assert pixels.DECODE.limit == 5 << 20
    finally:
        pixels.configure(old)


# ---- zip members that inflate past their declared size ---------------------------------------------------

def test_member_inflating_past_its_declared_size_is_refused_without_inflating_it(tmp_path, monkeypatch):
    declared = 5000
    path = imagegen.lying_zip(tmp_path / "liar.zip", 64 << 20, declared, name="pics/liar.png")
    inflated = [0]
    real = zipfile._get_decompressor

    class Counting:  # zlib's inflater, counting every byte it produces
        def __init__(self, d):
            self.d = d

        def decompress(self, data, max_length=0):
            out = self.d.decompress(data, max_length)
            inflated[0] += len(out)
            return out

        def flush(self, *a):
            out = self.d.flush(*a)
            inflated[0] += len(out)
            return out

        def __getattr__(self, name):  # eof, unconsumed_tail
            return getattr(self.d, name)

    monkeypatch.setattr(zipfile, "_get_decompressor", lambda kind: Counting(real(kind)))
    prep = ingest.prepare_upload([(path, "liar.zip")], tmp_path / "staging", ingest.Limits(), {})
    assert prep.images == []
    [(name, reason)] = [(s.name, s.reason) for s in prep.skipped]
    assert name == "liar.zip:pics/liar.png"
    assert "pics/liar.png" in reason and "inflates past the 5,000 bytes its header declares" in reason
    assert inflated[0] <= declared + 4096  # zipfile inflates at least 4 KB a read: not one byte more


def test_label_import_refuses_the_lying_member_too(tmp_path):
    path = imagegen.lying_zip(tmp_path / "liar.zip", 8 << 20, 100, name="labels/a.txt")
    skipped = ingest.extract_archive(path, "liar.zip", tmp_path / "out", ingest.Limits())
    assert [s.name for s in skipped] == ["liar.zip:labels/a.txt"]
    assert "inflates past the 100 bytes" in skipped[0].reason
    assert not (tmp_path / "out" / "labels" / "a.txt").exists()


def test_honest_members_still_read_whole(tmp_path):
    data = imagegen.jpeg_bytes(300, 200)
    path = imagegen.make_zip(tmp_path / "ok.zip", {"a.jpg": data, "b/c.txt": b"0 0.5 0.5 0.1 0.1\n" * 100})
    prep = ingest.prepare_upload([(path, "ok.zip")], tmp_path / "staging", ingest.Limits(), {})
    assert [i.rel_path for i in prep.images] == ["a.jpg"]
    assert prep.images[0].image_path.read_bytes() == data
    assert ingest.extract_archive(path, "ok.zip", tmp_path / "out", ingest.Limits()) == []
    assert (tmp_path / "out" / "b" / "c.txt").read_bytes() == b"0 0.5 0.5 0.1 0.1\n" * 100


# ---- the worker's prefetch ---------------------------------------------------------------------------------

class _NoBoxes:
    boxes = None


class _Predictor:
    batch = dataset = results = None


class _Model:
    """Like ultralytics: the predictor keeps the last batch's arrays until the next call."""

    def __init__(self):
        self.predictor = _Predictor()

    def predict(self, arrays, **opts):
        self.predictor.batch = list(arrays)
        return [_NoBoxes() for _ in arrays]


def _prefetch_peak(tmp_path, monkeypatch, budget_mb: int | None, n: int = 24) -> tuple[int, list]:
    """Run an annotation of ``n`` 640x480 PNGs (0.9 MB decoded each); return the most decoded bytes alive
    at once (arrays tracked until freed) and what the job reported."""
    import cv2

    if budget_mb is not None:
        monkeypatch.setenv("ANNOTATOR_PREFETCH_BUDGET_MB", str(budget_mb))
    images = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (640, 480), (i, 0, 0)).save(path)
        images.append((i + 1, str(path)))
    live, most = [0], [0]
    lock = threading.Lock()
    real_imread = cv2.imread

    def gone(nbytes):
        with lock:
            live[0] -= nbytes

    def tracked_imread(path, flags=cv2.IMREAD_COLOR):
        arr = real_imread(path, flags)
        with lock:
            live[0] += arr.nbytes
            most[0] = max(most[0], live[0])
        weakref.finalize(arr, gone, arr.nbytes)
        return arr

    monkeypatch.setattr(cv2, "imread", tracked_imread)
    huey = MemoryHuey(utc=True)
    ch = JobChannel(huey, 7, 0)
    payload = {"images": images, "mapping": {}, "model_path": "m.pt", "device": "cpu", "batch": 4}
    assert run_annotation(ch, payload, model_loader=lambda p: _Model()) == "succeeded"
    chunks, k = [], 0
    while (c := ch.pop_chunk(k)) is not None:
        chunks.append(c)
        k += 1
    return most[0], chunks


def test_worker_prefetch_holds_no_more_decoded_bytes_than_its_budget(tmp_path, monkeypatch):
    peak, chunks = _prefetch_peak(tmp_path, monkeypatch, budget_mb=2)
    one = 640 * 480 * 3
    assert peak <= 2 << 20 and peak >= one
    assert sorted(image_id for c in chunks for image_id, _ in c["items"]) == list(range(1, 25))


def test_worker_prefetch_reads_ahead_when_the_budget_allows(tmp_path, monkeypatch):
    peak, _ = _prefetch_peak(tmp_path, monkeypatch, budget_mb=None)
    assert peak > 2 << 20  # the default budget: the look-ahead (8 images) and the batch are decoded at once


def test_images_that_do_not_fit_two_at_once_are_read_one_at_a_time(tmp_path, monkeypatch):
    peak, _ = _prefetch_peak(tmp_path, monkeypatch, budget_mb=1, n=6)
    assert peak == 640 * 480 * 3  # each 0.9 MB image alone under a 1 MB budget (and never refused)


# ---- the app's RSS under concurrent opens of huge PNGs ----------------------------------------------------

CHILD = textwrap.dedent("""
    import json, os, sys, threading, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from tests import imagegen
    from annotator.settings import Settings
    from annotator.services import Services

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) << 10

    data = Path(sys.argv[1])
    s = Settings.from_env({{"ANNOTATOR_DATA_DIR": str(data), "ANNOTATOR_DEMO": "0",
                           "ANNOTATOR_DECODE_BUDGET_MB": sys.argv[2], "ANNOTATOR_EDITOR_MAX_SIDE": "1000"}})
    svc = Services.open(s)
    folder = data / "in"
    folder.mkdir()
    for i, b in enumerate(imagegen.big_pngs(8000, 8000, 6)):
        (folder / f"{{i}}.png").write_bytes(b)
    p = svc.projects.create_project("P", ["a"])
    svc.images.add_images(p, [folder], dataset="d")
    ids = [i.id for i in svc.ctx.store.list_images(p.id, offset=0, limit=10)]
    time.sleep(0.3)
    base, peak, stop = rss(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    opens = [threading.Thread(target=svc.review.load_image, args=(p, i)) for i in ids]
    for t in opens:
        t.start()
    for t in opens:
        t.join()
    stop.set()
    sampler.join()
    made = len(list(s.display_dir(p.id).glob("*.jpg")))
    print(json.dumps({{"base": base, "peak": peak[0], "copies": made}}))
""")


def _rss_growth(tmp_path, budget_mb: int) -> dict:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "data"), str(budget_mb)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_concurrent_opens_of_huge_pngs_stay_within_the_decode_budget(tmp_path):
    """Six 8000x8000 PNGs (256 MB decoded each) opened at once: with a 64 MB budget they decode one at a
    time. Without the budget (measured: ~1.3-1.6 GB growth) this fails."""
    r = _rss_growth(tmp_path, 64)
    assert r["copies"] == 6
    growth = r["peak"] - r["base"]
    assert growth < 600 << 20, f"RSS grew {growth >> 20} MB"


# ---- every decode holds its share --------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
def test_upload_decoding_happens_only_while_holding_the_budget(monkeypatch, fmt):
    """Each time Pillow decodes pixels during an upload's validation (including PNG's getexif(), which
    decodes the whole image), the decode budget holds at least that image's share."""
    from PIL import ImageFile

    budget = PixelBudget(1 << 30)
    monkeypatch.setattr(pixels, "DECODE", budget)
    seen = []
    real_load = ImageFile.ImageFile.load

    def load(self):
        if self.tile:  # pixels still to decode
            seen.append((self.size, budget.used))
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    dec = ingest.decode_image(imagegen.image_bytes(fmt, 900, 600), ingest.Limits())
    assert (dec.width, dec.height) == (900, 600)
    assert seen and all(used >= pixels.decoded_bytes(*size) for size, used in seen), seen
    assert budget.used == 0


def test_display_copies_decode_while_holding_the_budget(services, project, tmp_path, monkeypatch):
    import dataclasses

    from PIL import ImageFile

    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "big.png").write_bytes(imagegen.image_bytes("PNG", 3000, 2000))
    (folder / "big.jpg").write_bytes(imagegen.jpeg_bytes(3000, 2000))
    services.images.add_images(project, [folder], dataset="d")
    services.ctx.settings = dataclasses.replace(services.settings, editor_max_side=1000)
    budget = PixelBudget(1 << 30)
    monkeypatch.setattr(pixels, "DECODE", budget)
    seen = []
    real_load = ImageFile.ImageFile.load

    def load(self):
        if self.tile:
            seen.append((self.size, budget.used))
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    for img in services.ctx.store.list_images(project.id, offset=0, limit=10):
        d = services.review.load_image(project, img.id)["display"]
        assert max(d["width"], d["height"]) <= 1000
    assert len(seen) == 2 and all(used >= pixels.decoded_bytes(*size) for size, used in seen), seen
    assert budget.peak < pixels.decoded_bytes(3000, 2000) + 1  # the JPEG was drafted: only the PNG is full size
    assert budget.used == 0
