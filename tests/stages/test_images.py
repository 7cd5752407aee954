"""The bad-input corpus against the shared decoder: every problem has its reason."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from pltd.stages.images import ImageProblem, decode_rgb, read_header
from pltd.stages.readers.rows import IngestSettings, verify_image
from tests.helpers import jpeg_bytes


def png(arr: np.ndarray, mode: str | None = None, **info) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    im.save(buf, format="PNG", **info)
    return buf.getvalue()


def huge_jpeg_header(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 frame header claims width x height (no pixels decoded)."""
    data = bytearray(jpeg_bytes((16, 16)))
    i = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, height, width)
    return bytes(data)


def reason(data: bytes, **kw) -> str:
    with pytest.raises(ImageProblem) as exc:
        verify_image(data, IngestSettings(**kw))
    return exc.value.reason


def test_zero_byte_file_is_empty_file():
    assert reason(b"") == "empty_file"


def test_text_named_jpg_is_not_an_image():
    assert reason(b"just some text, not a picture\n" * 3) == "not_an_image"


def test_truncated_jpeg_is_a_decode_error():
    data = jpeg_bytes((200, 160))
    assert reason(data[: len(data) // 2]) == "decode_error"


def test_decompression_bomb_refused_from_header_alone():
    data = huge_jpeg_header(30000, 30000)
    assert struct.unpack_from(">HH", data, data.index(b"\xff\xc0") + 5) == (30000, 30000)
    assert reason(data) == "image_too_large"  # Pillow's own bomb guard


def test_max_image_pixels_setting_is_enforced():
    data = huge_jpeg_header(9000, 9000)  # under Pillow's guard, over the default 64 M pixels
    with pytest.raises(ImageProblem, match="max_image_pixels"):
        read_header(data)
    assert read_header(data, max_pixels=10**8).width == 9000


def test_tiny_image_refused():
    assert reason(jpeg_bytes((4, 4))) == "image_too_small"


def test_cmyk_jpeg_decodes_to_rgb():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, format="JPEG", quality=95)
    out = decode_rgb(buf.getvalue())
    assert out.shape == (32, 32, 3)
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 40 and out[..., 2].mean() < 40


def test_grey_jpeg_decodes_to_three_equal_channels():
    out = decode_rgb(jpeg_bytes((40, 30), mode="L"))
    assert out.shape == (30, 40, 3)
    assert np.array_equal(out[..., 0], out[..., 2])


def test_16_bit_png_is_scaled_not_clipped():
    arr = np.full((10, 12), 65535, np.uint16)
    arr[:, :6] = 32768
    out = decode_rgb(png(arr))
    assert out[0, 0, 0] == 128 and out[0, 11, 0] == 255  # clipping would give 255 everywhere


def test_rgba_png_drops_alpha():
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., 1] = 200
    arr[..., 3] = 0
    out = decode_rgb(png(arr))
    assert out.shape == (8, 8, 3) and out[0, 0, 1] == 200


def test_palette_with_transparency_decodes():
    im = Image.new("P", (16, 16), 1)
    im.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    buf = io.BytesIO()
    im.save(buf, format="PNG", transparency=0)
    out = decode_rgb(buf.getvalue())
    assert tuple(out[0, 0]) == (10, 20, 30)
