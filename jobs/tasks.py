"""Thin task wrappers, registered by name on whichever Huey instance jobs.queue builds."""

from __future__ import annotations

from .channel import JobChannel

ANNOTATE = "annotate"


def register(huey) -> None:
    @huey.task(name=ANNOTATE)
    def annotate(payload: dict) -> str:
        from .inference import run_annotation

        return run_annotation(JobChannel(huey, payload["job_id"], payload["attempt"]), payload)

    huey.annotate = annotate
