"""The schema as data: numbered migrations of DDL statements, applied in order by ``Store.migrate``.

Imports nothing of ours (nor duckdb): the tables are plain SQL text.
"""

from __future__ import annotations

# Each migration is (version, description, statements). Never edit a released one; append a new one.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial schema",
        [
            "CREATE SEQUENCE project_ids START 1",
            """CREATE TABLE projects (
                id INTEGER PRIMARY KEY DEFAULT nextval('project_ids'),
                name VARCHAR NOT NULL,
                description VARCHAR NOT NULL DEFAULT '',
                created_at TIMESTAMP NOT NULL,
                created_by VARCHAR
            )""",
            # No key constraint: reorder/delete rewrite idx in place, which DuckDB's unique indexes
            # can reject mid-statement. Uniqueness of (project_id, idx) and of names is kept by the
            # store's class methods, all of which run inside one transaction.
            """CREATE TABLE classes (
                project_id INTEGER NOT NULL,
                idx INTEGER NOT NULL,
                name VARCHAR NOT NULL
            )""",
            "CREATE SEQUENCE dataset_ids START 1",
            """CREATE TABLE datasets (
                id INTEGER PRIMARY KEY DEFAULT nextval('dataset_ids'),
                project_id INTEGER NOT NULL,
                name VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL,
                created_by VARCHAR
            )""",
            "CREATE SEQUENCE image_ids START 1",
            """CREATE TABLE images (
                id BIGINT PRIMARY KEY DEFAULT nextval('image_ids'),
                project_id INTEGER NOT NULL,
                dataset_id INTEGER NOT NULL,
                rel_path VARCHAR NOT NULL,
                sha256 VARCHAR NOT NULL,
                file VARCHAR NOT NULL,
                thumb VARCHAR NOT NULL,
                width INTEGER NOT NULL,
                height INTEGER NOT NULL,
                format VARCHAR NOT NULL,
                size_bytes BIGINT NOT NULL,
                split VARCHAR CHECK (split IN ('train', 'val', 'test')),
                status VARCHAR NOT NULL DEFAULT 'unreviewed'
                    CHECK (status IN ('unreviewed', 'approved', 'rejected')),
                reviewed_by VARCHAR,
                reviewed_at TIMESTAMP,
                version INTEGER NOT NULL DEFAULT 0,
                created_at TIMESTAMP NOT NULL,
                created_by VARCHAR
            )""",
            "CREATE UNIQUE INDEX images_project_sha ON images (project_id, sha256)",
            "CREATE SEQUENCE box_ids START 1",
            """CREATE TABLE boxes (
                id BIGINT PRIMARY KEY DEFAULT nextval('box_ids'),
                image_id BIGINT NOT NULL,
                class_idx INTEGER NOT NULL,
                x1 DOUBLE NOT NULL,
                y1 DOUBLE NOT NULL,
                x2 DOUBLE NOT NULL,
                y2 DOUBLE NOT NULL,
                confidence DOUBLE,
                source VARCHAR NOT NULL CHECK (source IN ('human', 'model', 'import')),
                model_id INTEGER,
                job_id INTEGER,
                created_by VARCHAR,
                created_at TIMESTAMP NOT NULL
            )""",
            # Point lookups of one image's boxes (the editor) at 1M boxes: see bench/store.py.
            "CREATE INDEX boxes_image ON boxes (image_id)",
            "CREATE SEQUENCE model_ids START 1",
            """CREATE TABLE models (
                id INTEGER PRIMARY KEY DEFAULT nextval('model_ids'),
                project_id INTEGER NOT NULL,
                name VARCHAR NOT NULL,
                file VARCHAR NOT NULL,
                sha256 VARCHAR NOT NULL,
                size_bytes BIGINT NOT NULL,
                task VARCHAR NOT NULL DEFAULT 'detect',
                class_names JSON NOT NULL,
                source VARCHAR NOT NULL CHECK (source IN ('uploaded', 'trained', 'demo')),
                parent_id INTEGER,
                job_id INTEGER,
                params JSON,
                metrics JSON,
                created_at TIMESTAMP NOT NULL,
                created_by VARCHAR
            )""",
            "CREATE SEQUENCE job_ids START 1",
            """CREATE TABLE jobs (
                id INTEGER PRIMARY KEY DEFAULT nextval('job_ids'),
                project_id INTEGER,
                kind VARCHAR NOT NULL,
                params JSON NOT NULL,
                status VARCHAR NOT NULL CHECK (status IN
                    ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
                progress DOUBLE NOT NULL DEFAULT 0,
                done BIGINT NOT NULL DEFAULT 0,
                total BIGINT,
                counters JSON,
                error VARCHAR,
                log VARCHAR NOT NULL DEFAULT '',
                worker VARCHAR,
                task_id VARCHAR,
                created_at TIMESTAMP NOT NULL,
                created_by VARCHAR,
                started_at TIMESTAMP,
                finished_at TIMESTAMP,
                heartbeat_at TIMESTAMP
            )""",
            "CREATE SEQUENCE upload_ids START 1",
            """CREATE TABLE uploads (
                id INTEGER PRIMARY KEY DEFAULT nextval('upload_ids'),
                project_id INTEGER NOT NULL,
                dataset_id INTEGER NOT NULL,
                source VARCHAR NOT NULL,
                added INTEGER NOT NULL,
                duplicates INTEGER NOT NULL,
                skipped INTEGER NOT NULL,
                report JSON NOT NULL,
                created_at TIMESTAMP NOT NULL,
                created_by VARCHAR
            )""",
        ],
    ),
]

MIGRATIONS.append((
    2,
    "jobs: attempts, per-image completion; images: human edit marker",
    [
        # Set when a person saves an image's boxes: with status 'approved' it makes the image untouchable
        # by jobs ("human work is sacred").
        "ALTER TABLE images ADD COLUMN edited_by VARCHAR",
        "ALTER TABLE images ADD COLUMN edited_at TIMESTAMP",
        "ALTER TABLE jobs ADD COLUMN attempt INTEGER DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN model_id INTEGER",
        # One row per image a job has finished (with or without boxes): what a resume skips.
        """CREATE TABLE job_images (
            job_id INTEGER NOT NULL,
            image_id BIGINT NOT NULL,
            attempt INTEGER NOT NULL,
            boxes INTEGER NOT NULL,
            status VARCHAR NOT NULL  -- 'done', 'protected' (a person got there first), 'error'
        )""",
    ],
))

MIGRATIONS.append((
    3,
    "exports: a history of what was exported, with its options and counts",
    [
        "CREATE SEQUENCE export_ids START 1",
        """CREATE TABLE exports (
            id INTEGER PRIMARY KEY DEFAULT nextval('export_ids'),
            project_id INTEGER NOT NULL,
            format VARCHAR NOT NULL,
            options JSON NOT NULL,
            summary JSON NOT NULL,
            file VARCHAR NOT NULL,
            size_bytes BIGINT NOT NULL,
            created_at TIMESTAMP NOT NULL,
            created_by VARCHAR
        )""",
    ],
))

MIGRATIONS.append((
    4,
    "training: per-project split ratios, the images each training job used, model evaluations",
    [
        # The split manager's settings: ratios (fractions summing to 1) and the seed of the hash order.
        """CREATE TABLE split_config (
            project_id INTEGER PRIMARY KEY,
            train DOUBLE NOT NULL,
            val DOUBLE NOT NULL,
            test DOUBLE NOT NULL,
            seed INTEGER NOT NULL,
            updated_at TIMESTAMP NOT NULL,
            updated_by VARCHAR
        )""",
        # The exact training data of a job (with the box-set hash in the model's params): reproducible.
        """CREATE TABLE training_images (
            job_id INTEGER NOT NULL,
            image_id BIGINT NOT NULL,
            split VARCHAR NOT NULL
        )""",
        "CREATE SEQUENCE evaluation_ids START 1",
        # A model's metrics on a project's approved val images at one moment (snapshot says which data).
        """CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY DEFAULT nextval('evaluation_ids'),
            project_id INTEGER NOT NULL,
            model_id INTEGER NOT NULL,
            job_id INTEGER,
            metrics JSON NOT NULL,
            snapshot JSON NOT NULL,
            created_at TIMESTAMP NOT NULL,
            created_by VARCHAR
        )""",
    ],
))

MIGRATIONS.append((
    5,
    "jobs: protocol cursors as columns, live telemetry and the result as JSON of their own, epochs as rows",
    [
        # What the monitor has consumed of a job's channel (per attempt) and what earlier attempts finished.
        "ALTER TABLE jobs ADD COLUMN chunks_in INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN logs_in INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN chunks_lost INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN done_before BIGINT NOT NULL DEFAULT 0",
        # The worker's last progress report (stage, images/s, ETA, batch, device, epoch ...): shown, not kept.
        "ALTER TABLE jobs ADD COLUMN live JSON",
        # What the job produced: an auto-annotation's tallies (images, boxes, protected, errors); a training's
        # or an evaluation's result (metrics, plots, speed ...) with the registered model's id and name.
        "ALTER TABLE jobs ADD COLUMN result JSON",
        """UPDATE jobs SET
            chunks_in = coalesce(CAST(json_extract_string(counters, '$.chunks_in') AS INTEGER), 0),
            logs_in = coalesce(CAST(json_extract_string(counters, '$.logs_in') AS INTEGER), 0),
            chunks_lost = coalesce(CAST(json_extract_string(counters, '$.chunks_lost') AS INTEGER), 0),
            done_before = coalesce(CAST(json_extract_string(counters, '$.done_before') AS BIGINT), 0),
            live = json_extract(counters, '$.live'),
            result = CASE WHEN kind = 'annotate' THEN json_object(
                    'images', coalesce(CAST(json_extract_string(counters, '$.images') AS BIGINT), 0),
                    'boxes', coalesce(CAST(json_extract_string(counters, '$.boxes') AS BIGINT), 0),
                    'protected', coalesce(CAST(json_extract_string(counters, '$.protected') AS BIGINT), 0),
                    'errors', coalesce(CAST(json_extract_string(counters, '$.errors') AS BIGINT), 0))
                ELSE json_merge_patch(coalesce(json_extract(counters, '$.result'), '{}'), json_object(
                    'model_id', json_extract(counters, '$.model_id'),
                    'model', json_extract_string(counters, '$.model'))) END""",
        # One row per finished epoch of a training job: the curves.
        """CREATE TABLE job_epochs (
            job_id INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            metrics JSON NOT NULL
        )""",
        """INSERT INTO job_epochs SELECT id, CAST(json_extract_string(e, '$.epoch') AS INTEGER), e FROM
            (SELECT id, unnest(json_extract(counters, '$.epochs[*]')) AS e FROM jobs
             WHERE json_extract(counters, '$.epochs') IS NOT NULL)""",
        "ALTER TABLE jobs DROP COLUMN counters",
    ],
))

MIGRATIONS.append((
    6,
    "editor: who or which job last changed an image; a per-project revision that live views poll",
    [
        # Set with every version bump: a person's name, "job #5" or "an import by ann" (conflict messages).
        "ALTER TABLE images ADD COLUMN changed_by VARCHAR",
        "ALTER TABLE images ADD COLUMN changed_at TIMESTAMP",
        # Advanced by every write that changes what a project's views show (boxes, reviews, images,
        # splits, classes): the UI polls this one number instead of re-reading its tables.
        "ALTER TABLE projects ADD COLUMN revision BIGINT DEFAULT 0",
    ],
))

MIGRATIONS.append((
    7,
    "the loop: the machine's boxes as a job wrote them, and the edits a reviewer made to them",
    [
        # The latest machine pass of each image, exactly as the job wrote it (boxes change under review;
        # these do not): what a reviewer was shown.
        """CREATE TABLE predictions (
            image_id BIGINT NOT NULL,
            job_id INTEGER NOT NULL,
            model_id INTEGER,
            class_idx INTEGER NOT NULL,
            x1 DOUBLE NOT NULL, y1 DOUBLE NOT NULL, x2 DOUBLE NOT NULL, y2 DOUBLE NOT NULL,
            confidence DOUBLE
        )""",
        # Machine boxes no person has touched yet are still the job's predictions.
        """INSERT INTO predictions SELECT b.image_id, b.job_id, b.model_id, b.class_idx, b.x1, b.y1, b.x2, b.y2,
            b.confidence FROM boxes b JOIN images i ON i.id = b.image_id
            WHERE b.source = 'model' AND b.job_id IS NOT NULL AND i.edited_at IS NULL AND i.status <> 'approved'""",
        # One row per approved image that a job pre-annotated: the edits between its predictions and the
        # approved boxes (annotator/edits.py), the latest approval only.
        """CREATE TABLE review_edits (
            image_id BIGINT NOT NULL,
            job_id INTEGER NOT NULL,
            model_id INTEGER,
            shown INTEGER NOT NULL,
            approved INTEGER NOT NULL,
            deleted INTEGER NOT NULL,
            added INTEGER NOT NULL,
            reclassed INTEGER NOT NULL,
            adjusted INTEGER NOT NULL,
            edits INTEGER NOT NULL,
            reviewed_by VARCHAR,
            measured_at TIMESTAMP NOT NULL
        )""",
    ],
))

MIGRATIONS.append((
    8,
    "keep learning: a fine-tune round after every K new approvals",
    [
        "ALTER TABLE projects ADD COLUMN learn_every INTEGER DEFAULT 0",  # K; 0 = off
        "ALTER TABLE projects ADD COLUMN learn_mark BIGINT DEFAULT 0",  # approved images when the last round began
    ],
))

MIGRATIONS.append((
    9,
    "a 64-bit difference hash per image (annotator/phash.py), for the most-informative review order",
    [
        "ALTER TABLE images ADD COLUMN phash UBIGINT",  # NULL until computed (from the thumbnail, on first need)
    ],
))

MIGRATIONS.append((
    10,
    "auto-annotation shards: a job's images split into shards any number of workers take",
    [
        # One row per shard of a job's attempt. ``retry``: its current try (a dead worker's shard is given to
        # another worker); ``done``: its images finished in all tries; the channel cursors are per shard.
        """CREATE TABLE job_shards (
            job_id INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            shard INTEGER NOT NULL,
            images BIGINT[] NOT NULL,
            status VARCHAR NOT NULL,
            retry INTEGER NOT NULL DEFAULT 0,
            done INTEGER NOT NULL DEFAULT 0,
            done_before INTEGER NOT NULL DEFAULT 0,
            task_id VARCHAR,
            worker VARCHAR,
            device VARCHAR,
            ips DOUBLE,
            chunks_in INTEGER NOT NULL DEFAULT 0,
            chunks_lost INTEGER NOT NULL DEFAULT 0,
            logs_in INTEGER NOT NULL DEFAULT 0,
            heartbeat_at TIMESTAMP,
            started_at TIMESTAMP,
            finished_at TIMESTAMP,
            error VARCHAR
        )""",
    ],
))

MIGRATIONS.append((
    11,
    "video frames (their video, index and timestamp), track ids of machine boxes, likely label errors",
    [
        "CREATE SEQUENCE video_ids START 1",
        # One row per uploaded video: what it was and how it was sampled. Its frames are ordinary images
        # pointing back here; the video file itself is not kept.
        """CREATE TABLE videos (
            id INTEGER PRIMARY KEY DEFAULT nextval('video_ids'),
            project_id INTEGER NOT NULL,
            dataset_id INTEGER NOT NULL,
            name VARCHAR NOT NULL, sha256 VARCHAR NOT NULL, size_bytes BIGINT NOT NULL,
            width INTEGER NOT NULL, height INTEGER NOT NULL, fps DOUBLE NOT NULL, frames INTEGER NOT NULL,
            duration_s DOUBLE NOT NULL, rotation INTEGER NOT NULL, codec VARCHAR NOT NULL,
            sampling VARCHAR NOT NULL, read INTEGER NOT NULL, kept INTEGER NOT NULL,
            stopped VARCHAR NOT NULL DEFAULT '',
            file VARCHAR,  -- the video itself, relative to the project folder, when the upload asked to keep it
            created_at TIMESTAMP NOT NULL,
            created_by VARCHAR
        )""",
        "ALTER TABLE images ADD COLUMN video_id INTEGER",  # NULL: a still image
        "ALTER TABLE images ADD COLUMN frame_index INTEGER",  # the frame's number in its video (every frame counted)
        "ALTER TABLE images ADD COLUMN frame_time DOUBLE",  # seconds from the video's start
        # ByteTrack's id of a machine box on a video's frames (auto-annotation with tracking); NULL otherwise.
        # Unique within one job and video, not across them.
        "ALTER TABLE boxes ADD COLUMN track_id INTEGER",
        "ALTER TABLE predictions ADD COLUMN track_id INTEGER",
        # Likely label errors found by running a model over approved images (annotator/label_errors.py):
        # the newest run per project replaces the previous one's open findings.
        "CREATE SEQUENCE label_error_ids START 1",
        """CREATE TABLE label_errors (
            id BIGINT PRIMARY KEY DEFAULT nextval('label_error_ids'),
            project_id INTEGER NOT NULL, image_id BIGINT NOT NULL, job_id INTEGER, model_id INTEGER,
            kind VARCHAR NOT NULL, score DOUBLE NOT NULL, box_id BIGINT, class_idx INTEGER, suggestion_class INTEGER,
            x1 DOUBLE, y1 DOUBLE, x2 DOUBLE, y2 DOUBLE,
            confidence DOUBLE,
            message VARCHAR NOT NULL,
            status VARCHAR NOT NULL DEFAULT 'open',  -- open | accepted | dismissed
            created_at TIMESTAMP NOT NULL, resolved_by VARCHAR, resolved_at TIMESTAMP
        )""",
    ],
))
