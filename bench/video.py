"""Frames out of a video: annotator.video.iter_frames against OpenCV's own read loop doing the same sampling.

    python bench/video.py [--seconds 60] [--runs 3]

Generates (once, cached in the system temp folder under annotator-bench-video/) a 1920x1080, 30 fps .mp4
(mp4v: what cv2.VideoWriter can write) of shapes moving over a textured background, --seconds long, then times,
best of --runs, interleaved:

  raw   cv2.VideoCapture(path); grab() every frame, retrieve() the kept ones and convert them to RGB (the
        floor: what any OpenCV code must do to get the same frames)
  ours  for frame in iter_frames(path, Sampling.parse(spec)) - the same frames, plus the timestamps, the
        sampling decisions, the rotation check and the end-of-file check

for "fps:2" (every 15th frame here) and "all", and prints frames out per second, frames decoded per second and
the ratio ours/raw of the times (the issue's target: <= 1.5). "scene:0.2" is timed too, as information (it must
retrieve every frame to compare it; it has no raw twin). If `ffmpeg` is on PATH, `ffmpeg -vf fps=2` writing
JPEGs is timed as well (a different job: it also encodes JPEGs). Asserts nothing; the last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit_result, machine, set_data_dir, table, temp_workdir, use_repo_package  # noqa: E402

W, H, FPS = 1920, 1080, 30
CACHE = Path(tempfile.gettempdir()) / "annotator-bench-video"


# --- the video -----------------------------------------------------------------------------------------------
def video_path(seconds: int) -> Path:
    return CACHE / f"shapes_{W}x{H}_{FPS}fps_{seconds}s_v2.mp4"


def make_video(seconds: int) -> Path:
    """The cached test video, generated if missing (into a .part file first: an interrupted run leaves none)."""
    import cv2
    import numpy as np

    path = video_path(seconds)
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part.mp4")
    n = seconds * FPS
    print(f"generating {path} ({n} frames, {W}x{H}; cached for later runs)...", flush=True)
    rng = np.random.default_rng(0)
    # a gradient with a static blocky texture: something for the encoder, not one flat colour
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([(xx * 120 // W), (yy * 120 // H), ((xx + yy) * 60 // (W + H))], axis=2).astype(np.int16)
    blocks = rng.integers(-20, 20, size=(H // 16 + 1, W // 16 + 1, 1), dtype=np.int16)
    base = np.clip(base + np.repeat(np.repeat(blocks, 16, 0), 16, 1)[:H, :W] + 40, 0, 255).astype(np.uint8)
    shapes = [(rng.uniform(0, W), rng.uniform(0, H), rng.uniform(-400, 400), rng.uniform(-300, 300),
               int(rng.integers(40, 160)), tuple(int(c) for c in rng.integers(80, 256, 3))) for _ in range(12)]
    # sensor-like noise that changes every frame (cycled from a few precomputed fields): the encoder has to
    # spend bits on every frame as on a real camera's, so decoding costs what it would
    noise = [rng.integers(-6, 7, size=(H, W, 1), dtype=np.int16) for _ in range(7)]
    vw = cv2.VideoWriter(str(part), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    if not vw.isOpened():
        raise SystemExit(f"cv2.VideoWriter cannot write {part}")
    started = time.perf_counter()
    for i in range(n):
        frame = np.clip(base + noise[i % len(noise)], 0, 255).astype(np.uint8)
        t = i / FPS
        for k, (x0, y0, vx, vy, size, colour) in enumerate(shapes):
            x, y = int(_bounce(x0 + vx * t, W)), int(_bounce(y0 + vy * t, H))
            if k % 2:
                cv2.circle(frame, (x, y), size // 2, colour, -1, cv2.LINE_AA)
            else:
                cv2.rectangle(frame, (x - size // 2, y - size // 2), (x + size // 2, y + size // 2), colour, -1)
        vw.write(frame)
        if (i + 1) % (n // 10 or 1) == 0:
            print(f"  {i + 1}/{n} frames, {time.perf_counter() - started:.0f} s", flush=True)
    vw.release()
    part.rename(path)
    print(f"generated in {time.perf_counter() - started:.0f} s, {path.stat().st_size / 1e6:.0f} MB", flush=True)
    return path


def _bounce(v: float, size: int) -> float:
    """A position moving freely, folded back into 0..size (it bounces off the edges)."""
    v %= 2 * size
    return v if v < size else 2 * size - v


# --- the contenders ------------------------------------------------------------------------------------------
def raw_loop(path: Path, step: int) -> tuple[float, int, int]:
    """OpenCV alone: grab every frame, retrieve + RGB every ``step``-th. (seconds, frames out, frames decoded)"""
    import cv2

    started = time.perf_counter()
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    index = kept = 0
    while cap.grab():
        if index % step == 0:
            ok, bgr = cap.retrieve()
            if not ok:
                break
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            kept += 1
        index += 1
    cap.release()
    return time.perf_counter() - started, kept, index


def ours(path: Path, spec: str) -> tuple[float, int, int]:
    from annotator.video import Extraction, Sampling, iter_frames

    started = time.perf_counter()
    result = Extraction()
    for _ in iter_frames(path, Sampling.parse(spec), result):
        pass
    if result.stopped:
        print(f"  WARNING: {result.stopped}")
    return time.perf_counter() - started, result.kept, result.read


def ffmpeg_fps2(path: Path, work: Path, run: int) -> float:
    out = work / f"ffmpeg{run}"
    out.mkdir()
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-vf", "fps=2", "-q:v", "3",
                    str(out / "%05d.jpg")], check=True)
    seconds = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def upload(path: Path, work: Path, run: int) -> tuple[float, int]:
    """The whole upload a user waits for: services add_images of the video at fps:2 into a fresh data folder
    (decode, JPEG frames at quality 95, thumbnails, hashes, the commit). Returns (seconds, frames added)."""
    from annotator.services import Services
    from annotator.settings import Settings

    svc = Services.open(Settings.from_env({"ANNOTATOR_DATA_DIR": str(work / f"upload{run}"), "ANNOTATOR_DEMO": "0"}))
    try:
        p = svc.projects.create_project("Video", ["thing"])
        t = time.perf_counter()
        r = svc.images.add_images(p, [path], sampling="fps:2")
        return time.perf_counter() - t, len(r.added)
    finally:
        svc.close()


def best(runs: list[tuple[float, int, int]]) -> tuple[float, int, int]:
    return min(runs, key=lambda r: r[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="length of the generated 1080p video (default 60)")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of each contender; the best is reported")
    args = ap.parse_args()

    with temp_workdir("bench-video-") as work:
        set_data_dir(work / "data")  # house rule; annotator.video itself touches no data folder
        use_repo_package()
        import cv2

        from annotator.video import probe

        path = make_video(args.seconds)
        info = probe(path)
        print(f"video: {path.name}, {info.width}x{info.height}, {info.fps:g} fps, {info.frames} frames, "
              f"codec {info.codec}, {path.stat().st_size / 1e6:.0f} MB; OpenCV {cv2.__version__}, "
              f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}", flush=True)

        cases = [("fps:2", round(info.fps / 2)), ("all", 1), ("scene:0.2", None)]
        rows, payload = [], {}
        for spec, step in cases:
            raw_runs, our_runs = [], []
            for _ in range(args.runs):
                if step is not None:
                    raw_runs.append(raw_loop(path, step))
                our_runs.append(ours(path, spec))
            o = best(our_runs)
            r = best(raw_runs) if raw_runs else None
            if r and r[1] != o[1]:
                print(f"  WARNING: {spec}: raw kept {r[1]} frames, ours {o[1]}")
            ratio = o[0] / r[0] if r else float("nan")
            rows.append([spec, o[1], r[0] if r else float("nan"), o[0], r[1] / r[0] if r else float("nan"),
                         o[1] / o[0], o[2] / o[0], f"{ratio:.2f}x" if r else "(info)"])
            payload[spec] = {"frames_out": o[1], "decoded": o[2], "ours_s": round(o[0], 3),
                             "raw_s": round(r[0], 3) if r else None, "ratio": round(ratio, 3) if r else None,
                             "ours_runs": [round(x[0], 3) for x in our_runs],
                             "raw_runs": [round(x[0], 3) for x in raw_runs]}
            print(f"  {spec}: raw {[round(x[0], 2) for x in raw_runs]} s, ours {[round(x[0], 2) for x in our_runs]} s",
                  flush=True)

        up = min(upload(path, work, i) for i in range(args.runs))
        ffmpeg = shutil.which("ffmpeg")
        n = payload["fps:2"]["frames_out"]
        if ffmpeg:
            seconds = min(ffmpeg_fps2(path, work, i) for i in range(args.runs))
            rows.append(["ffmpeg -vf fps=2 (JPEGs)", n, float("nan"), seconds, float("nan"), n / seconds,
                         float("nan"), "(info)"])
            payload["ffmpeg_fps2_s"] = round(seconds, 3)
        else:
            seconds = None
            print("ffmpeg: not found on PATH, not timed")
        rows.append(["upload fps:2 (add_images)", up[1], seconds if seconds else float("nan"), up[0],
                     n / seconds if seconds else float("nan"), up[1] / up[0], float("nan"),
                     f"{up[0] / seconds:.2f}x ffmpeg" if seconds else "(info)"])
        payload["upload_fps2_s"] = round(up[0], 3)

        print()
        print(table(["sampling", "frames out", "raw s", "ours s", "raw out/s", "ours out/s", "ours decoded/s",
                     "ours/raw (time)"], rows))
        print(f"\nbest of {args.runs}; target: ours/raw <= 1.5. load {os.getloadavg()[0]:.2f}")
        emit_result({"bench": "video", "video": {"width": info.width, "height": info.height, "fps": info.fps,
                                                  "frames": info.frames, "codec": info.codec},
                     "runs": args.runs, "results": payload, "ffmpeg": bool(ffmpeg), "machine": machine()})


if __name__ == "__main__":
    main()
