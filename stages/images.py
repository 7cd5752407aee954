"""Safe image decoding shared by every stage.

Real datasets hold CMYK JPEGs, greyscale, 16-bit PNGs, palettes with transparency, truncated files
and the odd decompression bomb. Every stage decodes through `decode_rgb` so they all agree on what
an image is: 8-bit RGB, alpha dropped, and the same error reasons.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from pltd.stages.problems import RowProblem

# Never decode a truncated file as if it were whole (Pillow's default, but made explicit here).
Image.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_PIXELS = 64_000_000  # 8000 x 8000; larger is a bomb or not a face photo


class ImageProblem(RowProblem):
    """An image that cannot be used: becomes a rejected row with `reason`, never stops a build."""


@dataclass(frozen=True)
class Header:
    format: str
    mode: str
    width: int
    height: int


def read_header(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """Identify an image from its header alone; refuse empty, unknown and oversized ones."""
    if len(data) == 0:
        raise ImageProblem("empty_file", "0 bytes")
    try:
        with Image.open(io.BytesIO(data)) as im:
            header = Header(im.format or "unknown", im.mode, im.width, im.height)
    except Image.DecompressionBombError as exc:
        raise ImageProblem("image_too_large", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageProblem("not_an_image", f"{len(data)} bytes of an unknown format") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageProblem("decode_error", f"header: {exc}") from exc
    if header.width * header.height > max_pixels:
        raise ImageProblem("image_too_large", f"{header.width}x{header.height} exceeds max_image_pixels={max_pixels}")
    if header.width < 1 or header.height < 1:
        raise ImageProblem("decode_error", f"degenerate size {header.width}x{header.height}")
    return header


def decode_rgb(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode to an HxWx3 uint8 RGB array, whatever the file's mode (Eq.-free plumbing)."""
    read_header(data, max_pixels)  # refuses bombs before any pixel is decoded
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return to_rgb(im)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageProblem("decode_error", str(exc)) from exc


def to_rgb(im: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to 8-bit RGB; 16-bit and float data are scaled, not clipped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode != "RGB":
        im = im.convert("RGB")  # CMYK (incl. Adobe-inverted), L, LA, RGBA, P, YCbCr …
    return np.asarray(im, dtype=np.uint8)
