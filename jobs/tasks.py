"""Thin task wrappers, registered by name on whichever Huey instance jobs.queue builds."""

from __future__ import annotations

from .channel import JobChannel

ANNOTATE = "annotate"
TRAIN = "train"
EVALUATE = "evaluate"


def register(huey) -> None:
    @huey.task(name=ANNOTATE)
    def annotate(payload: dict) -> str:
        from .inference import run_annotation

        return run_annotation(JobChannel(huey, payload["job_id"], payload["attempt"]), payload)

    huey.annotate = annotate

    @huey.task(name=TRAIN)
    def train(payload: dict) -> str:
        from .training import run_training

        return run_training(JobChannel(huey, payload["job_id"], payload["attempt"]), payload)

    huey.train = train

    @huey.task(name=EVALUATE)
    def evaluate(payload: dict) -> str:
        from .training import run_evaluation

        return run_evaluation(JobChannel(huey, payload["job_id"], payload["attempt"]), payload)

    huey.evaluate = evaluate
