"""Deterministic test images and archives (numpy + PIL, seeded). Nothing comes from the internet.

Every image has a dark, seeded, blocky background and a bright white MARKER square in its top-left
corner, so a test can tell where the original top-left ended up after an EXIF rotation.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ORIENTATION_TAG = 0x0112
MARKER_VALUE = 255
BACKGROUND_MAX = 100


def marker_size(w: int, h: int) -> int:
    """Side of the white marker square in the top-left corner of a generated w x h image."""
    return max(4, min(w, h) // 4)


def pixels(w: int, h: int, seed: int = 0) -> np.ndarray:
    """An h x w x 3 uint8 array: seeded dark 8x8-block noise, white marker square at the top-left."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, BACKGROUND_MAX, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    arr = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)[:h, :w].copy()
    m = marker_size(w, h)
    arr[:m, :m] = MARKER_VALUE
    return arr


def pil_image(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(pixels(w, h, seed), "RGB")


def jpeg_bytes(w: int, h: int, seed: int = 0, orientation: int | None = None, quality: int = 90) -> bytes:
    """A JPEG of the generated pixels; ``orientation`` sets EXIF tag 0x0112 (pixels are NOT rotated)."""
    im = pil_image(w, h, seed)
    kwargs = {"quality": quality}
    if orientation is not None:
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = int(orientation)
        kwargs["exif"] = exif.tobytes()
    out = io.BytesIO()
    im.save(out, "JPEG", **kwargs)
    return out.getvalue()


def image_bytes(fmt: str, w: int, h: int, seed: int = 0) -> bytes:
    """The generated pixels encoded as JPEG, PNG, WEBP, TIFF or BMP."""
    fmt = fmt.upper()
    if fmt == "JPEG":
        return jpeg_bytes(w, h, seed)
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    out = io.BytesIO()
    pil_image(w, h, seed).save(out, fmt, **kwargs)
    return out.getvalue()


def png_header_only(w: int, h: int) -> bytes:
    """A tiny PNG whose header declares w x h pixels but whose data is a few bytes: a pixel-count bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def make_zip(path: Path | str, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, compress_type=compression)
    return path


def zip_bomb(path: Path | str, size: int = 200 << 20, name: str = "bomb.jpg") -> Path:
    """One member named like an image: ``size`` bytes of zeros, deflated (ratio ~1000:1), streamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:
            left = size
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    return path


ZIPSLIP_NAMES = ("../evil.jpg", "/abs/evil.jpg", "a/../../evil.jpg")


def zipslip_zip(path: Path | str) -> Path:
    """Members whose names try to escape the extraction folder, each a valid JPEG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i, name in enumerate(ZIPSLIP_NAMES):
            info = zipfile.ZipInfo("x", date_time=(2024, 1, 1, 0, 0, 0))
            info.filename = name  # ZipInfo() would normalise the name; keep it raw
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, jpeg_bytes(32, 24, seed=900 + i))
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def big_pngs(w: int, h: int, n: int) -> list[bytes]:
    """``n`` distinct RGB PNGs of w x h pixels that compress to almost nothing (a few hundred KB at
    13000x13000): the pixel data is compressed once and shared, a text chunk makes each file unique."""
    row = b"\0" + bytes(3 * w)
    z = zlib.compressobj(9)
    parts = [z.compress(row) for _ in range(h)]
    idat = b"".join(parts) + z.flush()
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))  # 8-bit RGB
    return [b"\x89PNG\r\n\x1a\n" + ihdr + _png_chunk(b"tEXt", b"Comment\0copy %d" % i) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b"") for i in range(n)]


def lying_zip(path: Path | str, real_size: int, declared: int, name: str = "liar.png") -> Path:
    """One deflated member of ``real_size`` zero bytes whose local and central headers both declare
    ``declared`` bytes (its CRC is the real data's): a zip bomb that passes every check made on headers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w") as f:  # under 2 GB: no zip64 extra field, the sizes are the headers' own
            left = real_size
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    data = bytearray(path.read_bytes())
    assert not info.extra, "expected no zip64 extra field"
    struct.pack_into("<I", data, info.header_offset + 22, declared)  # local header: uncompressed size
    cd = bytes(data).rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, declared)  # central directory: uncompressed size
    path.write_bytes(bytes(data))
    return path
