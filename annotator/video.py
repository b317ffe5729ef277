"""Video files to sampled, upright RGB frames, streamed: how a video becomes images to label.

A labeller wants a few hundred distinct frames out of a clip, not all 30 a second, and a 2 GB phone video must
never sit in memory. So frames are decoded one at a time with OpenCV's FFmpeg backend and only the kept ones are
colour-converted and handed out (``iter_frames`` is a stream; at most the current frame and, in scene mode, a
64-pixel-wide greyscale copy of the last kept one are held). The sampling (``Sampling``) is a small value with a
text form for settings and forms: "all", "every:10", "fps:2", "scene:0.25", each optionally ",max:500".

What real files do that this module deals with:

- Phone videos are stored sideways with a rotation tag (the display matrix of the track header). OpenCV 5's
  FFmpeg backend reads it (``CAP_PROP_ORIENTATION_META``: 0/90/180/270) and by default rotates the frames itself
  (``CAP_PROP_ORIENTATION_AUTO`` is 1, and then FRAME_WIDTH/HEIGHT report the rotated size). We switch that off and
  rotate here, so the rotation is applied exactly once whatever the build's default is; if a backend refuses to
  switch it off we leave it to OpenCV instead of rotating twice.
- Damaged or cut-off files: the frames decoded before the damage are kept, and ``Extraction.stopped`` says where
  decoding stopped. OpenCV reports no decode errors, so "stopped early" is judged by comparing what was decoded
  with the frame count and duration the container claims, with some slack because containers lie a little. An
  .mp4/.mov cut short usually cannot be opened at all (its index, the moov box, is written at the end): that is
  a ``BadVideo``.
- FFmpeg opens more than videos (a still JPEG is a one-frame "video", a .txt file renders as ANSI art); those
  are refused with a reason rather than turned into frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from annotator.types import UserError, format_clock

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")
SAMPLING_MODES = ("all", "every", "fps", "scene")
SAMPLING_FORMS = 'all, every:N, fps:F, scene:T, each optionally followed by ",max:M" (e.g. "fps:2,max:500")'

# Scene mode compares greyscale copies this wide: big enough to see a cut, small enough that sensor noise and
# compression artefacts average out (INTER_AREA) and the comparison costs nothing next to decoding.
SCENE_THUMB_WIDTH = 64
# Time used when neither the container's timestamps nor its frame rate are known: FFmpeg's own default rate.
ASSUMED_FPS = 25.0
# A stream that decoded this many fewer frames than the container claims, and ended this much earlier than its
# duration, stopped early: a fraction of the whole, but never less than a couple of frames.
SHORT_FRACTION = 0.01
SHORT_FRAMES = 2

# A tag of 90 means "turn clockwise to show", as phones write it and as OpenCV's own auto-rotation reads it.
_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
# Still images FFmpeg would happily open as a one-frame video: (magic at offset 0, name).
# (GIF is left to FFmpeg: an animated one is a video of sorts.)
_STILL_IMAGES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"BM", "BMP"), (b"II*\x00", "TIFF"),
                 (b"MM\x00*", "TIFF"))


class BadVideo(UserError):
    """Not a readable video; the message is the user-facing reason (names what is wrong)."""


# --- sampling ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sampling:
    """Which frames to keep. ``scene``: keep a frame when the mean absolute difference between its greyscale
    thumbnail and the LAST KEPT frame's, divided by 255, reaches the threshold (0 = identical, 1 = black against
    white). A cut between unrelated shots usually measures 0.2 or more (0.3-0.6 between very different ones),
    sensor noise and a small moving object under 0.05; a slow pan or fade adds up against the last kept frame, so
    it yields a frame each time the view has changed by the threshold."""

    mode: str = "fps"  # "all" | "every" | "fps" | "scene"
    every: int = 1  # mode "every": keep frame 0, N, 2N...
    fps: float = 2.0  # mode "fps": the frame nearest each 1/fps step; never more than the video's own rate
    scene: float = 0.2  # mode "scene": the 0..1 difference threshold described above
    max_frames: int = 0  # 0 = no limit

    def __post_init__(self):
        bad = _bad_field(self)
        if bad:
            raise ValueError(f"bad sampling: {bad} must be {_NEEDS[bad]}, not {getattr(self, bad)!r}; "
                             f"accepted: {SAMPLING_FORMS}")

    @classmethod
    def parse(cls, text: str) -> "Sampling":
        """"all", "every:10", "fps:2", "scene:0.25", optionally ",max:500". ValueError names the bad value."""
        parts = [p.strip().lower() for p in str(text).split(",")]
        if not parts[0] or len(parts) > 2:
            raise ValueError(f'bad sampling "{text}": accepted: {SAMPLING_FORMS}')
        kwargs = _parse_mode(parts[0], text)
        if len(parts) == 2:
            key, _, value = parts[1].partition(":")
            if key.strip() != "max":
                raise ValueError(f'bad sampling "{text}": "{parts[1]}" is not ",max:M"; accepted: {SAMPLING_FORMS}')
            kwargs["max_frames"] = _parse_number(value, int, "max", text)
        return cls(**kwargs)

    def spec(self) -> str:
        """The text form: ``Sampling.parse(s.spec()) == s`` for every sampling parse can produce."""
        head = {"all": "all", "every": f"every:{self.every}", "fps": f"fps:{_num(self.fps)}",
                "scene": f"scene:{_num(self.scene)}"}[self.mode]
        return head + (f",max:{self.max_frames}" if self.max_frames else "")

    def describe(self) -> str:
        """For people: "2 frames per second, at most 500", "every 10th frame", "every frame"..."""
        if self.mode == "all" or (self.mode == "every" and self.every == 1):
            text = "every frame"
        elif self.mode == "every":
            text = f"every {_ordinal(self.every)} frame"
        elif self.mode == "fps":
            text = f"{_num(self.fps)} frame{'' if self.fps == 1 else 's'} per second"
        else:
            text = f"a frame at each scene change (difference {_num(self.scene)} or more)"
        return text + (f", at most {self.max_frames}" if self.max_frames else "")


_NEEDS = {"mode": "one of " + ", ".join(SAMPLING_MODES), "every": "a whole number of frames, 1 or more",
          "fps": "a number of frames per second above 0", "scene": "a difference threshold between 0 and 1",
          "max_frames": "a whole number of frames, 0 for no limit"}


def _bad_field(s: Sampling) -> str:
    """The first field whose value is out of range, or ""."""
    return next((name for name in _NEEDS if not _field_ok(name, getattr(s, name))), "")


def _field_ok(name: str, value) -> bool:
    if name == "mode":
        return value in SAMPLING_MODES
    if name in ("every", "max_frames"):
        return isinstance(value, int) and not isinstance(value, bool) and value >= (1 if name == "every" else 0)
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
        return False
    return value > 0 if name == "fps" else 0 < value < 1


def _parse_mode(part: str, text: str) -> dict:
    name, colon, value = part.partition(":")
    name = name.strip()
    if name == "all" and not colon:
        return {"mode": "all"}
    if name in ("every", "fps", "scene") and colon:
        kind = int if name == "every" else float
        return {"mode": name, name: _parse_number(value, kind, name, text)}
    raise ValueError(f'bad sampling "{text}": "{part}" is not one of the accepted forms: {SAMPLING_FORMS}')


def _parse_number(value: str, kind: type, name: str, text: str) -> int | float:
    """``value`` as an int or float in the range Sampling accepts for ``name`` ("max" for max_frames)."""
    value = value.strip()
    field = "max_frames" if name == "max" else name
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or not _field_ok(field, number):
        raise ValueError(f'bad sampling "{text}": {name} must be {_NEEDS[field]}, not "{value}"; '
                         f"accepted: {SAMPLING_FORMS}")
    return number


def _num(x: float) -> str:
    """2.0 -> "2", 0.25 -> "0.25", exact (repr), so the text form parses back to the same float."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# --- opening and probing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoInfo:
    width: int  # as the frames come out (upright, i.e. after rotation)
    height: int
    fps: float  # the video's frame rate (0 when unknown)
    frames: int  # frame count the container claims (0 when unknown; may be wrong)
    duration_s: float
    rotation: int  # 0/90/180/270: the rotation tag (phone videos), already applied to the frames
    codec: str  # fourcc text


@dataclass(frozen=True)
class Frame:
    index: int  # frame number in the video (0-based, counting every decoded frame, not only kept ones)
    time_s: float  # timestamp in seconds (the container's when sane, else index / fps)
    image: np.ndarray  # HxWx3 uint8 RGB, upright


@dataclass
class Extraction:
    """Filled in while iterating; read after the loop ends."""

    read: int = 0  # frames decoded
    kept: int = 0
    stopped: str = ""  # "" = ran to the end (or to max_frames); else where and why it stopped, for the user


def probe(path) -> VideoInfo:
    """Size, rate, length, rotation and codec of a video. Decodes its first frame, so a file that opens but
    cannot be decoded is a BadVideo here and not halfway through an import."""
    cap, info, rotate = _open(path)
    try:
        ok, bgr = cap.retrieve() if cap.grab() else (False, None)
        if not ok or bgr is None:
            raise BadVideo(_no_frames(path))
        # The decoded frame's size is the truth (a container's stated size can differ, e.g. cropping).
        return _with_size(info, _upright_rgb(bgr, rotate))
    finally:
        cap.release()


def _open(path) -> tuple[cv2.VideoCapture, VideoInfo, int]:
    """The opened capture, its info and the rotation WE must apply (0 when OpenCV applies it)."""
    p = Path(path)
    name = p.name or str(path)
    if not p.is_file():
        raise BadVideo(f"{name} is not a readable video (" + ("it is a folder)" if p.is_dir() else "no such file)"))
    still = _still_image(p)
    if still:
        raise BadVideo(f"{name} is not a readable video (it is a still {still} image)")
    cap = cv2.VideoCapture(str(p.absolute()), _backend())  # absolute: "a:b.mp4" is no protocol
    if not cap.isOpened():
        raise BadVideo(f"{name} is not a readable video (OpenCV cannot open it: not a video, a format it does not "
                       "know, or a damaged file; an .mp4 or .mov cut short loses its index and cannot be opened)")
    try:
        codec = _fourcc(cap.get(cv2.CAP_PROP_FOURCC))
        if codec.lower() == "ansi":  # FFmpeg renders .txt/.nfo files as ANSI art "videos"
            raise BadVideo(f"{name} is not a readable video (it is a text file)")
        tag, ours = _rotation(cap)
        info = _info(cap, codec, tag, ours)
    except BaseException:
        cap.release()
        raise
    return cap, info, ours


def _backend() -> int:
    """FFmpeg explicitly (CAP_ANY would let the image-sequence backend read "%d" in a file name as a pattern)."""
    return cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY


def _still_image(p: Path) -> str:
    try:
        with p.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        raise BadVideo(f"{p.name} is not a readable video ({e.strerror or e})") from None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _STILL_IMAGES if head.startswith(magic)), "")


def _rotation(cap: cv2.VideoCapture) -> tuple[int, int]:
    """(the rotation tag, the rotation we must apply). OpenCV 5 auto-rotates by default; turn that off so the
    rotation is ours and happens once. A backend that will not turn it off keeps rotating: then we do not."""
    tag = _right_angle(cap.get(cv2.CAP_PROP_ORIENTATION_META))
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    opencv_rotates = cap.get(cv2.CAP_PROP_ORIENTATION_AUTO) != 0
    return tag, 0 if opencv_rotates else tag


def _right_angle(value: float) -> int:
    """0, 90, 180 or 270 (a tag of -90 is 270)."""
    return int(round(value / 90.0)) * 90 % 360 if math.isfinite(value) else 0


def _info(cap: cv2.VideoCapture, codec: str, tag: int, ours: int) -> VideoInfo:
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if ours in (90, 270):  # OpenCV reports the stored size; the frames we hand out are turned
        w, h = h, w
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if math.isfinite(fps) and 0 < fps < 10_000 else 0.0
    frames = cap.get(cv2.CAP_PROP_FRAME_COUNT)  # INT64_MIN or negative for "unknown" (e.g. a still image)
    frames = int(frames) if math.isfinite(frames) and 0 < frames < 2 ** 40 else 0
    duration = frames / fps if frames and fps else 0.0
    return VideoInfo(width=w, height=h, fps=fps, frames=frames, duration_s=duration, rotation=tag, codec=codec)


def _with_size(info: VideoInfo, image: np.ndarray) -> VideoInfo:
    h, w = image.shape[:2]
    if (w, h) == (info.width, info.height):
        return info
    return VideoInfo(w, h, info.fps, info.frames, info.duration_s, info.rotation, info.codec)


def _fourcc(value: float) -> str:
    code = int(value) if math.isfinite(value) else 0
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return "".join(c for c in text if c.isprintable()).strip()


def _no_frames(path) -> str:
    return f"{Path(path).name} is not a readable video (it opens, but no frame of it can be decoded)"


def _upright_rgb(bgr: np.ndarray, rotate: int) -> np.ndarray:
    """A retrieved BGR frame turned upright and converted to RGB (a fresh array: the caller may keep it)."""
    if rotate:
        bgr = cv2.rotate(bgr, _ROTATE[rotate])
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --- extraction ----------------------------------------------------------------------------------------------
def iter_frames(path, sampling: Sampling | str, result: Extraction | None = None) -> Iterator[Frame]:
    """The kept frames of the video, in order, one at a time (``sampling`` may be its text form). Opens the file
    and decodes its first frame NOW, so a BadVideo comes from this call, not from the first ``next()``. Fills
    ``result`` while iterating; stops decoding as soon as ``sampling.max_frames`` frames are kept. Closing the
    iterator early (or dropping it) releases the file."""
    sampling = Sampling.parse(sampling) if isinstance(sampling, str) else sampling
    result = result if result is not None else Extraction()
    cap, info, rotate = _open(path)
    if not cap.grab():
        cap.release()
        raise BadVideo(_no_frames(path))
    return _frames(cap, info, rotate, sampling, result)


def _frames(cap: cv2.VideoCapture, info: VideoInfo, rotate: int, sampling: Sampling,
            result: Extraction) -> Iterator[Frame]:
    """The loop behind iter_frames; the first frame is already grabbed."""
    wanted = _selector(sampling, info.fps)
    scene = _SceneFilter(sampling.scene) if sampling.mode == "scene" else None
    index, t = 0, None
    try:
        while True:
            result.read += 1
            t = _frame_time(cap.get(cv2.CAP_PROP_POS_MSEC), index, info.fps, t)
            if wanted(index, t):
                # Only kept frames (and, in scene mode, candidates) pay for the colour conversion.
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    result.read -= 1  # grabbed but not decodable: it does not count as read
                    result.stopped = _stopped_sentence(index, t, info)
                    return
                if scene is None or scene.changed(bgr):
                    result.kept += 1
                    yield Frame(index=index, time_s=t, image=_upright_rgb(bgr, rotate))
                    if sampling.max_frames and result.kept >= sampling.max_frames:
                        return
            index += 1
            if not cap.grab():
                break
        result.stopped = _stopped_early(result.read, t, info)
    finally:
        cap.release()


def _selector(sampling: Sampling, video_fps: float) -> Callable[[int, float], bool]:
    """Which frames to decode to pixels, from the index and time alone (scene mode needs them all)."""
    if sampling.mode == "every":
        return lambda index, t: index % sampling.every == 0
    if sampling.mode != "fps":
        return lambda index, t: True
    return _fps_selector(sampling.fps, video_fps)


def _fps_selector(target_fps: float, video_fps: float) -> Callable[[int, float], bool]:
    """Keep the frame nearest each step k/target_fps. A frame at time t "owns" the steps in (t - d/2, t + d/2],
    d = one frame at the video's rate (ties go to the earlier frame). Deciding needs only the current frame
    (OpenCV can retrieve only the last grabbed one), and each step lands in at most one frame, so no more frames
    than the video's own rate come out. A step in a gap of a variable-rate video goes to the next frame."""
    half = 0.5 / video_fps if video_fps > 0 else 0.0
    step = 1.0 / target_fps
    next_k = 0

    def wanted(index: int, t: float) -> bool:
        nonlocal next_k
        edge = t + half + 1e-6  # the epsilon makes exact ties (25 fps, 2 per second) go to the earlier frame
        if next_k * step > edge:
            return False
        next_k = math.floor(edge / step) + 1  # every step up to here is served by this frame
        return True

    return wanted


class _SceneFilter:
    """Scene mode: the greyscale thumbnail of the last kept frame, and whether a new frame differs enough."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.last: np.ndarray | None = None

    def changed(self, bgr: np.ndarray) -> bool:
        thumb = _thumb(bgr)
        if self.last is not None and self.last.shape == thumb.shape and difference(self.last, thumb) < self.threshold:
            return False
        self.last = thumb
        return True


def _thumb(bgr: np.ndarray) -> np.ndarray:
    """Scene mode's greyscale thumbnail, SCENE_THUMB_WIDTH wide."""
    h, w = bgr.shape[:2]
    size = (SCENE_THUMB_WIDTH, max(1, round(SCENE_THUMB_WIDTH * h / w)))
    if w > 8 * size[0]:
        # A nearest-neighbour step down to 8x the thumbnail first: 4x cheaper at 1080p than averaging every
        # pixel, and 64 samples per thumbnail pixel still average sensor noise out.
        bgr = cv2.resize(bgr, (8 * size[0], 8 * size[1]), interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Scene mode's measure: mean absolute difference of two greyscale thumbnails, 0..1."""
    return float(cv2.absdiff(a, b).mean()) / 255.0


def _frame_time(pos_msec: float, index: int, fps: float, previous: float | None) -> float:
    """The container's timestamp when it is sane (finite, not negative, later than the previous frame's);
    else index / fps. Some backends and streams answer 0 or nothing for every frame."""
    t = pos_msec / 1000.0 if math.isfinite(pos_msec) else -1.0
    if t >= 0 and (previous is None or t > previous):
        return t
    return index / (fps or ASSUMED_FPS)


def _stopped_early(read: int, last_t: float | None, info: VideoInfo) -> str:
    """"" when the decoded frames reach (about) what the container claims; else the sentence for the user. Both
    the count and the time must fall short: a variable-rate stream's claimed count (duration x nominal rate) can
    be far off while its timestamps still reach the end."""
    if not info.frames or info.frames - read <= max(SHORT_FRAMES, SHORT_FRACTION * info.frames):
        return ""
    frame_s = 1.0 / (info.fps or ASSUMED_FPS)
    reached = (last_t if last_t is not None else 0.0) + frame_s
    if info.duration_s and info.duration_s - reached <= max(SHORT_FRAMES * frame_s, SHORT_FRACTION * info.duration_s):
        return ""
    return _stopped_sentence(read, reached, info)


def _stopped_sentence(index: int, t: float, info: VideoInfo) -> str:
    of = f" of about {info.frames}" if info.frames else ""
    return (f"stopped at frame {index} ({format_time(t)}){of}: "
            "the file is damaged or truncated after that point")


def format_time(seconds: float) -> str:
    """"00:04.0", "01:02.5", "1:02:03.5": to the tenth of a second (negative or unknown reads 00:00.0). The
    app's one clock (types.format_clock): the editor's and the gallery's frame labels read the same."""
    return format_clock(seconds)
