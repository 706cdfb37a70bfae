"""Encoded image bytes -> uint8 [3, H, W] (or [1, H, W]) tensors: the one decoder of every path that reads users'
images (the streamed transform, the driver's data check, `convert`).

Limits, from the header, before any pixel is decoded: at most MAX_PIXELS pixels (Pillow's MAX_IMAGE_PIXELS, 256 MiB
as 8-bit RGB). A decompression bomb (a 20000x20000 PNG of 390 kB would take 1.2 GB) is refused, never allocated.

Decoders: JPEGs by simplejpeg (libjpeg-turbo with its fast integer IDCT, as FFCV decodes), everything else, and
JPEGs simplejpeg refuses, by Pillow. Every mode becomes 8-bit: Pillow converts palette (with or without
transparency), 1-bit, L, LA, RGBA, CMYK and YCbCr; alpha is dropped, not composited (as torchvision's RGB mode
does). 16-bit (I;16*) keeps its high byte (value >> 8), where Pillow's own conversion would clip every value
above 255 to white; I (32-bit integer) is read as 16-bit and refused outside 0..65535; F (32-bit float) has no
range to map, and is refused. A refused image raises ImageRefused, whose message is the rule it broke.
"""
from __future__ import annotations

import io
import re
import warnings

import numpy as np
import torch
from PIL import Image

try:
    import simplejpeg
except ImportError:  # pragma: no cover - a declared dependency; without it Pillow decodes JPEGs too (slower)
    simplejpeg = None

JPEG_MAGIC = b"\xff\xd8"
MAX_PIXELS = (1 << 28) // 3  # = Pillow's MAX_IMAGE_PIXELS: 256 MiB as 8-bit RGB
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
BOMB = "(a decompression bomb, or far more pixels than training uses)"


class ImageRefused(ValueError):
    """Bytes that do not decode, or break a rule of this module; the message says which (no file name: the
    caller knows it)."""


def decode_rgb(data: bytes | None, gray: bool = False) -> torch.Tensor | None:
    """`decode`, or None for bytes it refuses: the streamed path skips and counts them."""
    try:
        return decode(data, gray)
    except ImageRefused:
        return None


def decode(data: bytes | None, gray: bool = False) -> torch.Tensor:
    """Encoded bytes -> uint8 [3, H, W] (or [1, H, W] with `gray`), a channels-last view; ImageRefused otherwise."""
    if not data:
        raise ImageRefused("no image bytes (an empty cell or file)")
    if simplejpeg is not None and data[:2] == JPEG_MAGIC:
        hwc = _jpeg(data, gray)
        if hwc is not None:
            return torch.from_numpy(hwc).permute(2, 0, 1)
    return torch.from_numpy(_pil(data, gray)).permute(2, 0, 1)


def check_pixels(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageRefused(f"{width}x{height} is {width * height:,} pixels; `pixels <= {MAX_PIXELS:,}` must hold "
                           f"{BOMB}")


def _jpeg(data: bytes, gray: bool) -> np.ndarray | None:
    """uint8 [H, W, C] by simplejpeg; None for what it cannot read (CMYK, 12-bit, not a JPEG after all)."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    check_pixels(width, height)
    try:
        # the fast IDCT: within a few levels of the exact one, a few % faster; the chroma upsampling stays the smooth
        # one (the fast one is off by up to ~100 levels at colour edges)
        return simplejpeg.decode_jpeg(data, colorspace="GRAY" if gray else "RGB", fastdct=True)
    except ValueError:
        return None


def _pil(data: bytes, gray: bool) -> np.ndarray:
    """uint8 [H, W, C] by Pillow: opened lazily (the header only), its size checked, then decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own bomb warning (we refuse those) and format chatter
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:  # beyond twice Pillow's limit: it refuses at open
            found = re.search(r"\((\d+) pixels\)", str(e))
            got = f"{int(found[1]):,} pixels" if found else "too many pixels"
            raise ImageRefused(f"{got}; `pixels <= {MAX_PIXELS:,}` must hold {BOMB}") from None
        except Exception as e:  # noqa: BLE001 - Pillow raises many types for bytes it cannot read
            raise ImageRefused(f"not an image Pillow reads ({_first_line(e)})") from None
        check_pixels(*img.size)
        try:
            img.load()
            return _to_uint8(img, gray)
        except ImageRefused:
            raise
        except Exception as e:  # noqa: BLE001 - truncated or corrupt data fails here
            raise ImageRefused(f"{img.format or 'the image'} data does not decode ({_first_line(e)})") from None


def _to_uint8(img: Image.Image, gray: bool) -> np.ndarray:
    mode = img.mode
    if mode == "F":
        raise ImageRefused("mode F (32-bit float) has no defined range to map to 8 bits; save it as 8- or 16-bit")
    if mode == "I" or mode in SIXTEEN_BIT:
        a = np.asarray(img)
        if mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageRefused(f"mode I (32-bit integer) holds values {a.min()}..{a.max()}; `0 <= value <= 65535` "
                               f"must hold (read as 16-bit)")
        g = (a.astype(np.uint32) >> 8).astype(np.uint8)  # the high byte: 65535 -> 255, and the order kept
        return np.repeat(g[..., None], 1 if gray else 3, axis=2)
    target = "L" if gray else "RGB"
    try:
        out = img if mode == target else img.convert(target)
    except ValueError as e:  # a mode Pillow cannot convert (La, ...)
        raise ImageRefused(f"mode {mode} has no conversion to {target} ({_first_line(e)})") from None
    a = np.array(out)  # a writable copy: torch refuses to share read-only memory
    return a[..., None] if a.ndim == 2 else a


def _first_line(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."
