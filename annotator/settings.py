"""One Settings object, read from the environment. Every path the app touches derives from ``data_dir``.

``Settings.prepare()`` creates the data folder and sets the offline-safe environment for ultralytics and
Gradio. Call it before importing gradio or ultralytics: both read their environment at import time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from .types import UserError, set_data_folder
from .users import User, Users, read_users_file

DEFAULT_PORT = 7860


def _env_bool(env, name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise UserError(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def _video_sampling(env) -> str:
    raw = (env.get("ANNOTATOR_VIDEO_SAMPLING") or "").strip()
    if not raw:
        return Settings.video_sampling
    from .video import Sampling  # only when set: OpenCV loads in ~0.2 s

    try:
        Sampling.parse(raw)
    except ValueError as e:
        raise UserError(f"ANNOTATOR_VIDEO_SAMPLING={raw!r}: {e}") from None
    return raw


def _near_bits(env) -> int:
    value = _env_int(env, "ANNOTATOR_NEAR_DUPLICATE_BITS", Settings.near_duplicate_bits, 0)
    if value > 12:
        raise UserError(f"ANNOTATOR_NEAR_DUPLICATE_BITS={value} must be at most 12 (of 64 bits; unrelated images "
                        "differ in about 32)")
    return value


def _env_int(env, name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise UserError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise UserError(f"{name}={value} must be at least {minimum}")
    return value


def parse_auth(text: str, origin: str) -> tuple[tuple[str, str], ...]:
    """Parse "user:pass,user2:pass2" (or one pair per line). ``origin`` names the source in errors."""
    pairs = []
    for n, item in enumerate(text.replace("\n", ",").split(","), start=1):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        user, sep, password = item.partition(":")
        if not sep or not user.strip() or not password:
            raise UserError(f"{origin}: entry {n} is not 'user:password' (got {user.strip() or '<empty>'!r}...)")
        pairs.append((user.strip(), password))
    names = [u for u, _ in pairs]
    dup = {u for u in names if names.count(u) > 1}
    if dup:
        raise UserError(f"{origin}: user(s) listed twice: {', '.join(sorted(dup))}")
    return tuple(pairs)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine: 127.0.0.0/8, ::1, localhost."""
    import ipaddress

    h = (host or "").strip().strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    share: bool = False
    # Who may sign in (ANNOTATOR_AUTH, the users file); empty: no login, and everyone acting is an admin.
    users: Users = field(default_factory=Users, repr=False, compare=False)
    users_file: Path | None = None  # ANNOTATOR_USERS_FILE; None: <data>/users.txt (read when it exists)
    allow_anonymous: bool = False  # serve on a non-loopback address without login
    first_admin: bool = False  # on a first start without users, create "admin" with a random password
    device: str = "auto"
    # Ingest limits: every one names its environment variable in the error a user sees.
    max_image_pixels: int = 178_956_970  # PIL's own hard limit (2x its warning threshold)
    max_file_bytes: int = 1 << 30  # one image file
    max_upload_bytes: int = 64 << 30  # total uncompressed size of one upload
    max_zip_ratio: int = 200  # uncompressed/compressed size of one zip member
    thumb_size: int = 256
    ingest_threads: int = 0  # 0 = one per CPU core
    video_sampling: str = "fps:2"  # which frames of an uploaded video become images (annotator/video.py Sampling)
    # Two images whose hashes (annotator/phash.py) differ in at most this many of 64 bits are near-duplicates:
    # listed together, and kept in one split.
    near_duplicate_bits: int = 8  # phash.DEFAULT_MAX_DISTANCE, chosen by bench/dedupe.py
    check_after_training: bool = True  # a finished training checks the approved labels with its new model
    queue_url: str = ""  # "" = SqliteHuey in the data folder; redis://host:6379/0 for remote workers
    local_worker: bool = True  # `python app.py` starts a worker child process
    demo: bool = True  # create the Demo project on an empty data folder
    stale_after_s: float = 15.0  # a running job whose worker is silent this long is interrupted
    shard_images: int = 256  # an auto-annotation job's images per task (any number of workers share a job)
    shard_retries: int = 2  # a dead worker's shard is given to another worker this many times, then interrupted
    # The deployment's worker token: workers without the data folder fetch images and models from the app with
    # it (ANNOTATOR_WORKER_TOKEN, set on the app and those workers); empty: the file endpoint is off.
    worker_token: str = field(default="", repr=False)
    editor_max_side: int = 2560  # the editor shows larger images as a JPEG this size (0 = always the original)
    trust_all_checkpoints: bool = False  # register .pt files whose pickle imports anything (runs their code)
    # Memory: decoded pixels in memory at once, per process (an image larger than the budget decodes alone).
    decode_budget_mb: int = 768  # the app: display copies, uploads' validation and thumbnails
    prefetch_budget_mb: int = 512  # a worker: images decoded ahead of (and during) inference

    # --- construction -------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env=None, *, load_users: bool = True) -> "Settings":
        """``load_users=False`` reads no users (``annotator users``, which edits the file, must work on a
        missing or broken one)."""
        env = os.environ if env is None else env
        data_dir = Path(env.get("ANNOTATOR_DATA_DIR") or "data").expanduser().resolve()
        users: list[User] = []
        if env.get("ANNOTATOR_AUTH"):
            users += [User(u, "admin", plain=p, origin="ANNOTATOR_AUTH")
                      for u, p in parse_auth(env["ANNOTATOR_AUTH"], "ANNOTATOR_AUTH")]
        users_file = (env.get("ANNOTATOR_USERS_FILE") or "").strip()
        path = Path(users_file).expanduser() if users_file else data_dir / "users.txt"
        if users_file and not path.is_file() and load_users:
            raise UserError(f"ANNOTATOR_USERS_FILE={users_file!r}: no such file")
        if path.is_file() and load_users:
            from_file = read_users_file(path)
            twice = sorted({u.name for u in users} & {u.name for u in from_file})
            if twice:
                raise UserError(f"ANNOTATOR_AUTH + users file {path}: user(s) listed twice: {', '.join(twice)}")
            users += from_file
        return cls(
            data_dir=data_dir,
            host=env.get("ANNOTATOR_HOST") or "127.0.0.1",
            port=_env_int(env, "ANNOTATOR_PORT", DEFAULT_PORT, minimum=1),
            share=_env_bool(env, "ANNOTATOR_SHARE", False),
            users=Users(users),
            users_file=path if users_file else None,
            allow_anonymous=_env_bool(env, "ANNOTATOR_ALLOW_ANONYMOUS", False),
            first_admin=_env_bool(env, "ANNOTATOR_FIRST_ADMIN", False),
            device=(env.get("ANNOTATOR_DEVICE") or "auto").strip(),
            max_image_pixels=_env_int(env, "ANNOTATOR_MAX_IMAGE_PIXELS", cls.max_image_pixels, 1),
            max_file_bytes=_env_int(env, "ANNOTATOR_MAX_FILE_BYTES", cls.max_file_bytes, 1),
            max_upload_bytes=_env_int(env, "ANNOTATOR_MAX_UPLOAD_BYTES", cls.max_upload_bytes, 1),
            max_zip_ratio=_env_int(env, "ANNOTATOR_MAX_ZIP_RATIO", cls.max_zip_ratio, 1),
            ingest_threads=_env_int(env, "ANNOTATOR_INGEST_THREADS", 0, 0),
            video_sampling=_video_sampling(env),
            near_duplicate_bits=_near_bits(env),
            check_after_training=_env_bool(env, "ANNOTATOR_CHECK_AFTER_TRAINING", True),
            queue_url=(env.get("ANNOTATOR_QUEUE_URL") or "").strip(),
            local_worker=_env_bool(env, "ANNOTATOR_LOCAL_WORKER", True),
            demo=_env_bool(env, "ANNOTATOR_DEMO", True),
            stale_after_s=float(_env_int(env, "ANNOTATOR_STALE_AFTER_S", 15, 2)),
            shard_images=_env_int(env, "ANNOTATOR_SHARD_IMAGES", cls.shard_images, 1),
            shard_retries=_env_int(env, "ANNOTATOR_SHARD_RETRIES", cls.shard_retries, 0),
            worker_token=(env.get("ANNOTATOR_WORKER_TOKEN") or "").strip(),
            editor_max_side=_env_int(env, "ANNOTATOR_EDITOR_MAX_SIDE", cls.editor_max_side, 0),
            trust_all_checkpoints=_env_bool(env, "ANNOTATOR_TRUST_ALL_CHECKPOINTS", False),
            decode_budget_mb=_env_int(env, "ANNOTATOR_DECODE_BUDGET_MB", cls.decode_budget_mb, 1),
            prefetch_budget_mb=_env_int(env, "ANNOTATOR_PREFETCH_BUDGET_MB", cls.prefetch_budget_mb, 1),
        )

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        """(user, password) of the users configured with a plain-text password (ANNOTATOR_AUTH, old-style
        users-file lines): the CLI signs in to the running app as the first of them."""
        return self.users.plain_pairs()

    @property
    def users_path(self) -> Path:
        """The users file: ANNOTATOR_USERS_FILE, else ``<data>/users.txt`` (read when it exists)."""
        return self.users_file or self.data_dir / "users.txt"

    def with_overrides(self, **kw) -> "Settings":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def validate_launch(self) -> None:
        if not (1 <= self.port <= 65535):
            raise UserError(f"port {self.port} is out of range 1-65535")
        if self.share and not self.users:
            raise UserError(
                "--share publishes the app on a public Gradio link; refusing to start without login. "
                "Add a user (annotator users add NAME --role admin), or set ANNOTATOR_AUTH='user:password' or "
                "ANNOTATOR_USERS_FILE=path."
            )
        if not self.users and not self.allow_anonymous and not is_loopback(self.host):
            raise UserError(
                f"ANNOTATOR_HOST={self.host} makes the app reachable from other machines, and no login is "
                "configured: refusing to start. Add a user (annotator users add NAME --role admin, or "
                "ANNOTATOR_AUTH='user:password' / ANNOTATOR_USERS_FILE=path), or serve on 127.0.0.1, or set "
                "ANNOTATOR_ALLOW_ANONYMOUS=1 if everyone who can reach it may do everything."
            )

    # --- paths ----------------------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.data_dir / "metadata.duckdb"

    @property
    def projects_dir(self) -> Path:
        return self.data_dir / "projects"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def config_dir(self) -> Path:
        return self.data_dir / "config"

    @property
    def queue_path(self) -> Path:
        return self.data_dir / "queue.db"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def app_info_path(self) -> Path:
        """Written by a running app: its pid and URL, so the CLI can go through it."""
        return self.data_dir / "app.json"

    @property
    def worker_log_path(self) -> Path:
        return self.data_dir / "worker.log"

    @property
    def demo_marker_path(self) -> Path:
        """Written once the Demo project was created: deleting the Demo project is final."""
        return self.data_dir / ".demo-created"

    @property
    def overlays_dir(self) -> Path:
        """Gallery thumbnails with their boxes drawn on, cached by content."""
        return self.tmp_dir / "overlays"

    @property
    def backups_dir(self) -> Path:
        """Backups made through the app's API wait here until the CLI has downloaded them."""
        return self.data_dir / "backups"

    def project_dir(self, project_id: int) -> Path:
        return self.projects_dir / str(int(project_id))

    def project_file(self, project_id: int, rel: str) -> Path:
        """A stored file of a project (image, thumbnail, model, export) from its project-relative path."""
        return self.project_dir(project_id) / rel

    def staging_dir(self, project_id: int) -> Path:
        """Uploads are staged here until their rows commit; any left at start-up are stale."""
        return self.project_dir(project_id) / "staging"

    def exports_dir(self, project_id: int) -> Path:
        return self.project_dir(project_id) / "exports"

    def display_dir(self, project_id: int) -> Path:
        """The editor's reduced copies of large images."""
        return self.project_dir(project_id) / "display"

    def job_dir(self, job_id: int) -> Path:
        """A training or evaluation job's folder: its manifest, dataset and ultralytics run."""
        return self.jobs_dir / str(int(job_id))

    @staticmethod
    def model_rel(sha256: str) -> str:
        """Where a registered model is stored, relative to its project folder (by content hash)."""
        return f"models/{sha256}.pt"

    # --- side effects -----------------------------------------------------------------------------
    def prepare(self) -> "Settings":
        """Create the data folder and make ultralytics/Gradio offline-safe and data-dir-contained."""
        set_data_folder(self.data_dir)  # a full disk's message names it when the failing write did not
        for d in (self.data_dir, self.projects_dir, self.tmp_dir / "gradio", self.config_dir / "Ultralytics"):
            d.mkdir(parents=True, exist_ok=True)
        # Derived from the data folder: always ours.
        os.environ["YOLO_CONFIG_DIR"] = str(self.config_dir)
        os.environ["GRADIO_TEMP_DIR"] = str(self.tmp_dir / "gradio")
        os.environ["MPLCONFIGDIR"] = str(self.config_dir / "matplotlib")
        # Offline by default; a user may opt back in by setting these explicitly.
        for key, value in (
            ("YOLO_OFFLINE", "1"),
            ("YOLO_AUTOINSTALL", "False"),
            ("GRADIO_ANALYTICS_ENABLED", "False"),
            ("HF_HUB_OFFLINE", "1"),
            ("HF_HUB_DISABLE_TELEMETRY", "1"),
            ("DO_NOT_TRACK", "1"),
        ):
            os.environ.setdefault(key, value)
        self._seed_fonts()
        return self

    def _seed_fonts(self) -> None:
        """ultralytics downloads Arial.ttf on first plot; hand it matplotlib's DejaVuSans instead."""
        target_dir = self.config_dir / "Ultralytics"
        wanted = [target_dir / "Arial.ttf", target_dir / "Arial.Unicode.ttf"]
        if all(p.exists() for p in wanted):
            return
        spec = importlib.util.find_spec("matplotlib")
        if spec is None or not spec.origin:
            return
        font = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if not font.is_file():
            return
        for p in wanted:
            if not p.exists():
                tmp = p.with_suffix(".tmp")
                shutil.copyfile(font, tmp)
                os.replace(tmp, p)
