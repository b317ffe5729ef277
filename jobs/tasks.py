"""Thin task wrappers, registered by name on whichever Huey instance jobs.queue builds. The runners (and
with them torch and ultralytics) are imported when a task runs, never when the app builds its queue."""

from __future__ import annotations

from .protocol import ANNOTATE, EVALUATE, TRAIN, JobChannel


def register(huey) -> None:
    @huey.task(name=ANNOTATE)
    def annotate(payload: dict) -> str:
        from .annotate import run_annotation

        return run_annotation(JobChannel.for_payload(huey, payload), payload)

    @huey.task(name=TRAIN)
    def train(payload: dict) -> str:
        from .train import run_training

        return run_training(JobChannel(huey, payload["job_id"], payload["attempt"]), payload)

    @huey.task(name=EVALUATE)
    def evaluate(payload: dict) -> str:
        from .train import run_evaluation

        return run_evaluation(JobChannel(huey, payload["job_id"], payload["attempt"]), payload)

    # The app enqueues by task name: getattr(huey, protocol.ANNOTATE).s(payload)
    for name, task in ((ANNOTATE, annotate), (TRAIN, train), (EVALUATE, evaluate)):
        setattr(huey, name, task)
