"""The annotation editor in a real browser: how long from a key press to the next image drawn with its boxes.

    python bench/editor_browser.py [--images 200] [--approve 50] [--next 50] [--saves 30] [--dwell-ms 600]

Builds one project (not timed): --images generated JPEGs, half 640x480 and half 4000x3000, alternating (so
every transition lands on both sizes), each with 3-8 machine boxes with a confidence. Launches the app on it
in its own process (``python -m annotator serve``, no worker, ANNOTATOR_EDITOR_MAX_SIDE as configured: 2560
by default, so the 4000x3000 images are shown from their display copy) and drives Debian's Chromium (Playwright, 1366x768,
the test flags; never a downloaded browser) through the editor's test hook:

- A transitions: press A (approve and next) on --approve images in a row;
- → transitions: press ArrowRight on --next images in a row;
  each measured in the page from the key event's own timestamp to the moment #aa-editor has
  data-ready="1" with the NEXT image's id (the editor sets it after the frame that shows the picture and
  its boxes); between presses the reviewer "looks" at the image for --dwell-ms;
- saves: select a box (click), nudge it (Alt+→: a real edit), Ctrl+S; measured from the key event to
  data-dirty="0" (the save's answer applied), and the server function's round trip as the page timed it.

The issue's targets: A -> next image drawn p95 <= 150 ms, median <= 60 ms; saves p95 <= 100 ms. The
1-minute load average before and after says how quiet the machine was. Asserts nothing; the last line is
`RESULT {json}`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (app_settings, emit_result, machine, percentile, set_data_dir, table, temp_workdir,  # noqa: E402
                    use_repo_package)

CLASSES = ["person", "car", "bicycle", "dog", "cat", "truck", "bus", "bird", "traffic light", "stop sign"]
SIZES = [(640, 480), (4000, 3000)]
TARGETS = {"transition_p50_ms": 60.0, "transition_p95_ms": 150.0, "save_p95_ms": 100.0}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

# In the page: press-to-ready of the next key press (the key event's timeStamp is when the browser made it).
ARM = """(kind) => {
  const root = document.querySelector('#aa-editor');
  const before = root.dataset.imageId;
  window.__aaBench = new Promise((resolve) => {
    let t0 = null;
    const key = (ev) => { if (t0 === null) t0 = ev.timeStamp; };
    document.addEventListener('keydown', key, true);
    const done = (ms) => { obs.disconnect(); document.removeEventListener('keydown', key, true); resolve(ms); };
    const obs = new MutationObserver(() => {
      if (t0 === null) return;
      if (kind === 'save' ? root.dataset.dirty === '0'
                          : root.dataset.ready === '1' && root.dataset.imageId !== before) done(performance.now() - t0);
    });
    obs.observe(root, { attributes: true });
  });
}"""


def make_images(folder: Path, n: int, seed: int) -> list[list[tuple]]:
    """n JPEGs alternating 640x480 / 4000x3000 (a noisy, shaded picture: photo-like sizes on disk) and the
    machine boxes for each: (class, x1, y1, x2, y2, confidence)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    boxes = []
    for i in range(n):
        w, h = SIZES[i % 2]
        small = rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        im = Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BILINEAR)
        arr = np.asarray(im).astype(np.int16)
        arr = np.clip(arr + rng.integers(-12, 13, size=arr.shape, dtype=np.int16), 0, 255).astype(np.uint8)
        Image.fromarray(arr, "RGB").save(folder / f"img{i:04d}.jpg", quality=88)
        mine = []
        for _ in range(pyrng.randint(3, 8)):
            bw, bh = pyrng.uniform(0.05, 0.3) * w, pyrng.uniform(0.05, 0.3) * h
            x1, y1 = pyrng.uniform(0, w - bw), pyrng.uniform(0, h - bh)
            mine.append((pyrng.randrange(len(CLASSES)), x1, y1, x1 + bw, y1 + bh, round(pyrng.uniform(0.2, 0.99), 3)))
        boxes.append(mine)
    return boxes


class AppProcess:
    """``python -m annotator serve`` on the bench's data folder (no demo, no worker), up when built."""

    def __init__(self, settings, env: dict[str, str], timeout_s: float = 120.0):
        import subprocess
        import urllib.request

        self.url = f"http://127.0.0.1:{settings.port}/"
        child_env = {**os.environ, **env, "ANNOTATOR_DATA_DIR": str(settings.data_dir), "ANNOTATOR_DEMO": "0",
                     "ANNOTATOR_LOCAL_WORKER": "0", "ANNOTATOR_PORT": str(settings.port),
                     "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                                 os.environ.get("PYTHONPATH")]))}
        # Its output goes to a file: a pipe nobody reads would stall the app once full.
        self.log = Path(settings.data_dir).parent / "app.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "annotator", "serve"], env=child_env,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise SystemExit(f"the app exited with {self.proc.returncode}: {tail}")
            try:
                urllib.request.urlopen(self.url, timeout=2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise SystemExit(f"the app did not answer at {self.url} within {timeout_s:.0f} s") from None
                time.sleep(0.5)

    def close(self) -> None:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def stats(samples: list[float]) -> dict:
    if not samples:
        return {"n": 0}
    return {"n": len(samples), "p50_ms": round(percentile(samples, 50), 1), "p95_ms": round(percentile(samples, 95), 1),
            "min_ms": round(min(samples), 1), "max_ms": round(max(samples), 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--approve", type=int, default=50, help="A transitions")
    ap.add_argument("--next", type=int, default=50, help="ArrowRight transitions")
    ap.add_argument("--saves", type=int, default=30)
    ap.add_argument("--dwell-ms", type=int, default=600, help="time spent looking at each image between keys")
    ap.add_argument("--max-side", type=int, default=2560, help="ANNOTATOR_EDITOR_MAX_SIDE")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settle-load", type=float, default=1.0, help="wait for the 1-min load average to drop to this")
    ap.add_argument("--settle-s", type=float, default=150, help="... for at most this long")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    if args.approve + args.next + 2 > args.images:
        ap.error("--images must be larger than --approve + --next + 1")
    if not Path(args.chromium).exists():
        print(f"No Chromium at {args.chromium} (apt-get install chromium); nothing measured.")
        return 1
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("Playwright is not installed (pip install -r requirements-dev.txt); nothing measured.")
        return 1

    with temp_workdir("annotator-bench-editor-browser-", keep=args.keep, parent=args.tmp) as work:
        set_data_dir(work / "data")
        use_repo_package()
        from annotator.services import Services
        from annotator.types import Box

        env = {"ANNOTATOR_EDITOR_MAX_SIDE": str(args.max_side)}
        settings = app_settings(work / "data", **env)
        t = time.perf_counter()
        folder = work / "images"
        folder.mkdir()
        machine_boxes = make_images(folder, args.images, args.seed)
        svc = Services.open(settings)
        try:
            project = svc.projects.create_project("editor-browser-bench", CLASSES)
            svc.images.add_images(project, [folder], dataset="photos", user="bench")
            imgs = svc.ctx.store.list_images(project.id, offset=0, limit=args.images + 10)
            svc.ctx.store.insert_boxes([(img.id, Box(x1, y1, x2, y2, c, confidence=p, source="model", job_id=1))
                                        for img, mine in zip(imgs, machine_boxes) for c, x1, y1, x2, y2, p in mine])
        finally:
            svc.close()
        size_of = {img.id: f"{img.width}x{img.height}" for img in imgs}
        # The app in its own process, as a user runs it: the browser's driver (Playwright's client, in this
        # process) must not share the server's interpreter.
        app = AppProcess(settings, env)
        try:
            build_s = time.perf_counter() - t
            print(f"built {len(imgs)} images ({args.images // 2} of each size) with "
                  f"{sum(map(len, machine_boxes))} machine boxes in {build_s:.0f} s; app at {app.url}", flush=True)

            # Let the build's own load die down (the 1-minute load average), so the figures are the editor's.
            settle = time.perf_counter()
            while os.getloadavg()[0] > args.settle_load and time.perf_counter() - settle < args.settle_s:
                time.sleep(2)
            print(f"load average {os.getloadavg()[0]:.2f} after {time.perf_counter() - settle:.0f} s of settling",
                  flush=True)
            load_before = os.getloadavg()[0]
            results: dict[str, list] = {"approve": [], "next": [], "save": []}
            landed: dict[str, list] = {"approve": [], "next": []}
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=FLAGS)
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                page.set_default_timeout(60_000)
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(app.url)
                page.wait_for_function("document.querySelector('#aa-project input') && "
                                       "document.querySelector('#aa-project input').value !== ''")
                page.locator("#aa-project input").fill(project.name)
                page.keyboard.press("Enter")
                page.get_by_role("tab", name="Annotate", exact=True).click()
                page.wait_for_function("document.querySelector('#aa-editor').dataset.ready === '1'")
                page.evaluate("document.activeElement && document.activeElement.blur()")

                def transition(kind: str, key: str) -> None:
                    page.wait_for_timeout(args.dwell_ms)
                    page.evaluate(ARM, kind)
                    page.keyboard.press(key)
                    ms = page.evaluate("window.__aaBench")
                    results[kind].append(ms)
                    landed[kind].append(size_of[int(page.get_attribute("#aa-editor", "data-image-id"))])

                phase_load = {}
                print(f"timing {args.approve} A transitions ...", flush=True)
                for _ in range(args.approve):
                    transition("approve", "a")
                phase_load["approve"] = round(os.getloadavg()[0], 2)
                print(f"timing {args.next} → transitions ...", flush=True)
                for _ in range(args.next):
                    transition("next", "ArrowRight")
                phase_load["next"] = round(os.getloadavg()[0], 2)
                page.wait_for_function("window.aaEditor.pending() === 0")
                print(f"timing {args.saves} saves ...", flush=True)
                rtt_before = len(page.evaluate("window.aaEditor.timings()"))
                for k in range(args.saves):
                    if k and k % 5 == 0:  # a new image now and then: saves of both sizes
                        page.keyboard.press("ArrowRight")
                        page.wait_for_function("document.querySelector('#aa-editor').dataset.ready === '1'")
                    b = page.evaluate("window.aaEditor.boxes().filter((b) => !b.hidden)[0]")
                    p = page.evaluate(f"window.aaEditor.toScreen({(b['x1'] + b['x2']) / 2}, {(b['y1'] + b['y2']) / 2})")
                    page.mouse.click(p["x"], p["y"])
                    page.keyboard.press("Alt+ArrowRight" if k % 2 == 0 else "Alt+ArrowLeft")
                    page.wait_for_timeout(args.dwell_ms // 3)
                    page.evaluate(ARM, "save")
                    page.keyboard.press("Control+s")
                    results["save"].append(page.evaluate("window.__aaBench"))
                timings = page.evaluate("window.aaEditor.timings()")
                phase_load["save"] = round(os.getloadavg()[0], 2)
                browser.close()
            load_after = os.getloadavg()[0]
            if errors:
                print(f"JavaScript errors on the page: {errors}")
        finally:
            app.close()
        svc = Services.open(settings)
        try:
            approved = svc.ctx.store.image_status_counts(project.id).get("approved", 0)
        finally:
            svc.close()

    save_rtt = [t["ms"] for t in timings[rtt_before:] if t["op"] == "save"]
    review_rtt = [t["ms"] for t in timings[:rtt_before] if t["op"] == "review"]
    out = {
        "A -> next image drawn": stats(results["approve"]),
        "→ -> next image drawn": stats(results["next"]),
        "Ctrl+S -> saved (data-dirty=0)": stats(results["save"]),
        "save round trip (page timed)": stats(save_rtt),
        "approve round trip (background)": stats(review_rtt),
    }
    for kind, name in (("approve", "A"), ("next", "→")):
        for size in sorted(set(landed[kind])):
            out[f"{name} onto {size}"] = stats([ms for ms, s in zip(results[kind], landed[kind]) if s == size])
    rows = [[k, v.get("n", 0), v.get("p50_ms", float("nan")), v.get("p95_ms", float("nan")),
             v.get("max_ms", float("nan"))] for k, v in out.items()]
    print()
    print(f"{args.images} images (640x480 and 4000x3000 alternating), dwell {args.dwell_ms} ms, "
          f"editor max side {args.max_side}; load average {load_before:.2f} before, {load_after:.2f} after "
          f"(after each phase: {phase_load}); "
          f"cpus={machine()['cpus']}; {approved} approved")
    print(table(["measurement", "n", "p50 ms", "p95 ms", "max ms"], rows))
    a, s = out["A -> next image drawn"], out["Ctrl+S -> saved (data-dirty=0)"]
    print(f"\ntargets: A p50 <= {TARGETS['transition_p50_ms']:.0f} ms: {'ok' if a['p50_ms'] <= 60 else 'OVER'}, "
          f"A p95 <= {TARGETS['transition_p95_ms']:.0f} ms: {'ok' if a['p95_ms'] <= 150 else 'OVER'}, "
          f"save p95 <= {TARGETS['save_p95_ms']:.0f} ms: {'ok' if s['p95_ms'] <= 100 else 'OVER'}")
    emit_result({"bench": "editor_browser", "images": args.images, "dwell_ms": args.dwell_ms,
                 "max_side": args.max_side, "results": out, "targets": TARGETS, "build_s": round(build_s, 1),
                 "loadavg": [round(load_before, 2), round(load_after, 2)], "phase_loadavg": phase_load,
                 "samples_ms": {k: [round(v, 1) for v in xs] for k, xs in results.items()},
                 "js_errors": errors,
                 "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
