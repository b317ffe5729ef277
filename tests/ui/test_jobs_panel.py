"""The Jobs panel's table: a sharded job shows its shards and every worker taking part with its speed."""

from __future__ import annotations

from annotator.ui.jobs_panel import jobs_html


def _job(**kw) -> dict:
    return {"id": 3, "project_id": 1, "kind": "annotate", "status": "running", "progress": 0.5, "done": 300,
            "total": 600, "images_per_s": 41.5, "eta_s": 7, "result": {"images": 300, "boxes": 900}, **kw}


def test_a_sharded_job_lists_its_workers_and_their_speed():
    live = {"shards": {"total": 3, "succeeded": 1, "running": 2, "queued": 0},
            "workers": [{"worker": "gpu-a:101", "device": "GPU 0", "ips": 30.25, "images": 200, "running": True},
                        {"worker": "gpu-b:7", "device": "cpu", "ips": 11.2, "images": 100, "running": True},
                        {"worker": "gpu-a:99", "device": "GPU 1", "ips": 0.0, "images": 40, "running": False}]}
    page = jobs_html([_job(live=live)], {1: "Cars"})
    assert "1/3 shards done · 2 running" in page
    assert "gpu-a:101 (GPU 0): 200 images 30.2 img/s" in page
    assert "gpu-b:7 (cpu): 100 images 11.2 img/s" in page
    assert "gpu-a:99 (GPU 1): 40 images idle" in page  # its worker died: its images still count
    assert "41.5 img/s" in page and "ETA 7s" in page


def test_an_ended_sharded_job_says_how_its_shards_ended():
    live = {"shards": {"total": 4, "succeeded": 1, "running": 0, "queued": 0, "cancelled": 2, "interrupted": 1},
            "workers": [{"worker": "a:1", "device": "cpu", "ips": 0, "images": 30, "running": False}]}
    page = jobs_html([_job(status="interrupted", live=live)], {1: "Cars"})
    assert "1/4 shards done · 2 cancelled · 1 interrupted" in page and "a:1 (cpu): 30 images" in page


def test_a_one_shard_job_on_one_worker_shows_no_worker_list():
    live = {"shards": {"total": 1, "running": 1}, "workers": [{"worker": "w:1", "device": "cpu", "ips": 9,
                                                               "images": 3, "running": True}]}
    assert "aa-job-workers" not in jobs_html([_job(live=live)], {1: "Cars"})
    assert "aa-job-workers" not in jobs_html([_job(live={})], {1: "Cars"})  # a training job, or one from before shards


def test_the_system_panel_names_each_worker_and_its_gpu(monkeypatch):
    from annotator.ui.tab_autoannotate import system_markdown
    from jobs.runtime import WORKER_DEVICE_ENV, WORKER_GPU_ENV, system_info

    monkeypatch.setenv(WORKER_DEVICE_ENV, "0")
    monkeypatch.setenv(WORKER_GPU_ENV, "3")
    here = system_info("auto")  # a process of `annotator worker --devices 3` (no GPU here: only the label shows)
    assert here["device_label"] == "GPU 3"
    page = system_markdown({"app": {"device": "cpu"}, "workers": [
        {**here, "worker": "gpu-host:11"},
        {"worker": "cpu-host:5", "device": "cpu", "gpus": []}]})
    assert "Worker gpu-host:11" in page and "jobs use **GPU 3**" in page
    assert "Worker cpu-host:5" in page and "jobs use **cpu**" in page
