"""Peak memory of the attacks in issue 12 (safe by default), each in a child process whose RSS this script
samples from /proc/<pid>/status every --sample-ms (20 ms):

    python bench/memory.py [--repo PATH] [--side 13000] [--opens 6] [--prefetch 12] [--only open,zip,prefetch]

  open      --opens accepted --side x --side PNGs (0.5 MB files) opened in the editor at once: the editor's
            server function ``load`` (EditorFunctions over Api over Services, as the page calls it), one
            thread each, in a process that has imported gradio like the app. The display copies are made
            here (a fresh data folder each run). Target: peak app RSS <= 1.5 GB.
  zip       a zip with ONE 1 MB member whose headers declare 2,000 bytes but which inflates to 1 GB, uploaded
            (Services.add_images); then three such uploads at once. Target: refused in < 1 s and < 200 MB.
  prefetch  --prefetch --side x --side PNGs auto-annotated by jobs.annotate.run_annotation with a tiny
            untrained YOLO built from yolov8n.yaml at imgsz 64 on CPU (no weights are downloaded): what is
            measured is the worker's reading ahead of inference. Peak worker RSS.

``--repo`` runs the same scenarios against another checkout (e.g. ``git archive main | tar -x -C /tmp/before``
then ``--repo /tmp/before``) for a before/after. The images are generated once into the temp folder (the PNGs'
pixel data is compressed once and shared). Prints a table, asserts nothing; the last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, emit_result, machine, table, temp_workdir  # noqa: E402

MB = 1 << 20


# --- inputs --------------------------------------------------------------------------------------------------
def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def big_pngs(folder: Path, side: int, n: int) -> list[Path]:
    """``n`` distinct side x side RGB PNGs of a few hundred KB: shared pixel data, a unique text chunk."""
    folder.mkdir(parents=True, exist_ok=True)
    row = b"\0" + bytes(3 * side)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
    out = []
    for i in range(n):
        p = folder / f"big{i:02d}.png"
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + _chunk(b"tEXt", b"Comment\0copy %d" % i) + _chunk(b"IDAT", idat)
                      + _chunk(b"IEND", b""))
        out.append(p)
    return out


def lying_zip(path: Path, real: int = 1 << 30, declared: int = 2000, name: str = "photos/liar.png") -> Path:
    """One member of ``real`` zero bytes (deflated to ~1 MB) whose local and central headers say ``declared``."""
    chunk = bytes(MB)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w") as f:
            for _ in range(real // MB):
                f.write(chunk)
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, info.header_offset + 22, declared)
    struct.pack_into("<I", data, bytes(data).rfind(b"PK\x01\x02") + 24, declared)
    path.write_bytes(bytes(data))
    return path


# --- the child processes -----------------------------------------------------------------------------------
# Each prints "MARK <name>" lines (the parent notes the time and RSS) and one "OUT {json}" line at the end.
CHILD_COMMON = """
import json, os, sys, threading, time
from pathlib import Path
sys.path.insert(0, os.environ["BENCH_REPO"])
def mark(name):
    print("MARK " + name, flush=True)
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
"""

CHILD_SETUP = """
from annotator.settings import Settings
from annotator.services import Services
s = Settings.from_env({"ANNOTATOR_DATA_DIR": sys.argv[1], "ANNOTATOR_DEMO": "0"})
svc = Services.open(s)
p = svc.projects.create_project("Big", ["thing"])
r = svc.images.add_images(p, [Path(sys.argv[2])], dataset="big")
ids = [i.id for i in svc.ctx.store.list_images(p.id, offset=0, limit=1000)]
svc.review.set_review_status(p, ids, "approved")
svc.close()
print("OUT " + json.dumps({"ids": ids, "skipped": [x.reason for x in r.skipped]}), flush=True)
"""

CHILD_OPEN = """
import gradio  # the app has it loaded
from annotator.settings import Settings
from annotator.services import Services
from annotator.ui.api import Api
from annotator.ui.editor import EditorFunctions
s = Settings.from_env({"ANNOTATOR_DATA_DIR": sys.argv[1], "ANNOTATOR_DEMO": "0"})
svc = Services.open(s)
ed = EditorFunctions(Api(svc))
ids = json.loads(sys.argv[2])
out, times = [None] * len(ids), [None] * len(ids)
def one(k, i):
    t = time.perf_counter()
    out[k] = ed.load({"project": "Big", "id": i}, "bench")
    times[k] = time.perf_counter() - t
threads = [threading.Thread(target=one, args=(k, i)) for k, i in enumerate(ids)]
time.sleep(0.5)
mark("start")
t0 = time.perf_counter()
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.perf_counter() - t0
mark("end")
print("OUT " + json.dumps({"wall_s": wall, "slowest_s": max(times), "hwm": hwm(),
                           "display": [o["image"]["display"]["width"] for o in out]}), flush=True)
"""

CHILD_ZIP = """
from annotator.settings import Settings
from annotator.services import Services
s = Settings.from_env({"ANNOTATOR_DATA_DIR": sys.argv[1], "ANNOTATOR_DEMO": "0"})
svc = Services.open(s)
n = int(sys.argv[3])
projects = [svc.projects.create_project(f"Z{k}", ["thing"]) for k in range(n)]
reports, times = [None] * n, [None] * n
def one(k):
    t = time.perf_counter()
    reports[k] = svc.images.add_images(projects[k], [Path(sys.argv[2])], dataset="z")
    times[k] = time.perf_counter() - t
threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
time.sleep(0.3)
mark("start")
for t in threads:
    t.start()
for t in threads:
    t.join()
mark("end")
print("OUT " + json.dumps({"slowest_s": max(times), "hwm": hwm(),
                           "reasons": sorted({f"{x.name}: {x.reason}" for r in reports for x in r.skipped})}), flush=True)
"""

CHILD_PREFETCH = """
from huey import MemoryHuey
from ultralytics import YOLO
from jobs.annotate import run_annotation
from jobs.protocol import JobChannel
paths = json.loads(sys.argv[2])
model = YOLO("yolov8n.yaml")
payload = {"images": [(k + 1, p) for k, p in enumerate(paths)], "mapping": {str(c): 0 for c in range(80)},
           "model_path": "tiny.yaml", "device": "cpu", "imgsz": 64, "conf": 0.25}
ch = JobChannel(MemoryHuey(utc=True), 1, 0)
time.sleep(0.3)
mark("start")
t0 = time.perf_counter()
status = run_annotation(ch, payload, model_loader=lambda p: model)
wall = time.perf_counter() - t0
mark("end")
done = ch.read_done() or {}
print("OUT " + json.dumps({"status": status, "wall_s": wall, "hwm": hwm(), "error": done.get("error")}), flush=True)
"""


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) << 10
    except OSError:
        pass
    return 0


def run_child(code: str, args: list[str], repo: Path, sample_s: float, timeout: float = 900) -> dict:
    """Run ``code`` in a child Python; sample its RSS until it exits. Returns its OUT json plus the RSS at
    MARK start (base), the peak between the marks, and the peak over its whole life."""
    env = {**os.environ, "BENCH_REPO": str(repo), "PYTHONPATH": str(repo), "YOLO_OFFLINE": "1"}
    script = textwrap.dedent(CHILD_COMMON) + textwrap.dedent(code)
    proc = subprocess.Popen([sys.executable, "-c", script, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    os.set_blocking(proc.stdout.fileno(), False)
    buf, lines = "", []
    base = peak_phase = peak_all = 0
    phase = None
    t_end = time.monotonic() + timeout
    while True:
        rss = _rss(proc.pid)
        peak_all = max(peak_all, rss)
        if phase == "start":
            peak_phase = max(peak_phase, rss)
        try:
            chunk = proc.stdout.read()
        except (BlockingIOError, TypeError):
            chunk = None
        if chunk:
            buf += chunk
            *done, buf = buf.split("\n")
            for line in done:
                lines.append(line)
                if line.startswith("MARK "):
                    phase = line[5:]
                    if phase == "start":
                        base = peak_phase = _rss(proc.pid)
        if proc.poll() is not None:
            break
        if time.monotonic() > t_end:
            proc.kill()
            break
        time.sleep(sample_s)
    rest = proc.stdout.read() or ""
    lines += (buf + rest).split("\n")
    err = proc.stderr.read()
    out = next((json.loads(x[4:]) for x in lines if x.startswith("OUT ")), None)
    if out is None:
        raise RuntimeError(f"child failed (rc {proc.returncode}): {err[-3000:]}")
    return {**out, "base": base, "peak": peak_phase, "peak_all": peak_all}


# --- scenarios -------------------------------------------------------------------------------------------------
def scenario_open(work: Path, repo: Path, side: int, n: int, sample_s: float) -> dict:
    pngs = big_pngs(work / "open_in", side, n)
    data = work / "open_data"
    setup = run_child(CHILD_SETUP, [str(data), str(pngs[0].parent)], repo, sample_s)
    r = run_child(CHILD_OPEN, [str(data), json.dumps(setup["ids"])], repo, sample_s)
    return {"file_kb": round(pngs[0].stat().st_size / 1024), "ingest_peak_mb": setup["peak_all"] / MB,
            "skipped": setup["skipped"], **r}


def scenario_zip(work: Path, repo: Path, n: int, sample_s: float) -> dict:
    z = lying_zip(work / "liar.zip")
    return {"zip_kb": round(z.stat().st_size / 1024),
            **run_child(CHILD_ZIP, [str(work / f"zip_data{n}"), str(z), str(n)], repo, sample_s)}


def scenario_prefetch(work: Path, repo: Path, side: int, n: int, sample_s: float) -> dict:
    pngs = big_pngs(work / "open_in", side, n)
    return run_child(CHILD_PREFETCH, [str(work / "prefetch"), json.dumps([str(p) for p in pngs])], repo, sample_s)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout whose code runs (default: this one)")
    ap.add_argument("--side", type=int, default=13000, help="side of the square PNGs (default 13000)")
    ap.add_argument("--opens", type=int, default=6, help="concurrent editor opens (default 6)")
    ap.add_argument("--prefetch", type=int, default=12, help="images auto-annotated (default 12)")
    ap.add_argument("--only", default="open,zip,prefetch", help="comma-separated scenarios")
    ap.add_argument("--sample-ms", type=float, default=20.0)
    ap.add_argument("--tmp", default=None, help="parent folder of the temp work folder")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    sample_s = args.sample_ms / 1000
    repo = args.repo.resolve()
    rows, result = [], {"bench": "memory", "repo": str(repo), "machine": machine(), "side": args.side}
    with temp_workdir("aa-bench-memory-", keep=args.keep, parent=args.tmp) as work:
        if "open" in only:
            r = scenario_open(work, repo, args.side, args.opens, sample_s)
            result["open"] = r
            rows.append((f"open: {args.opens} x {args.side}x{args.side} PNG ({r['file_kb']} KB) at once",
                         r["base"] / MB, r["peak"] / MB, r["hwm"] / MB, r["slowest_s"], "<= 1536 MB peak"))
        if "zip" in only:
            for n in (1, 3):
                r = scenario_zip(work, repo, n, sample_s)
                result[f"zip_x{n}"] = r
                rows.append((f"zip: lying 1 GB member ({r['zip_kb']} KB zip) x{n}", r["base"] / MB,
                             r["peak"] / MB, r["hwm"] / MB, r["slowest_s"], "< 1 s, < 200 MB" if n == 1 else ""))
            print("zip refusal:", "; ".join(result["zip_x1"]["reasons"]))
        if "prefetch" in only:
            r = scenario_prefetch(work, repo, args.side, args.prefetch, sample_s)
            result["prefetch"] = r
            rows.append((f"prefetch: {args.prefetch} x {args.side}x{args.side} PNG, tiny YOLO ({r['status']})",
                         r["base"] / MB, r["peak"] / MB, r["hwm"] / MB, r["wall_s"], ""))
    print(table(("scenario", "base MB", "peak MB (sampled)", "VmHWM MB", "seconds", "target"), rows))
    print(f"(repo {repo}; RSS sampled every {args.sample_ms:g} ms; load average {os.getloadavg()[0]:.2f})")
    emit_result(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
