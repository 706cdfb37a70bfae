"""The one image decoder (data/image_decode.py), on the in-memory path (`decode`, as the driver's check and
`convert` call it) and the streamed path (StreamTransform on a pyarrow batch, as Ray Data runs it): the pixel limit
read from the header (a bomb never allocates), and every mode and bit depth to 8-bit RGB, or refused in one line."""
from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from data_factory import jpeg_bomb, png_bomb, raw_png
from simmim_ray.config import Config
from simmim_ray.data import image_decode
from simmim_ray.data.decode import StreamTransform
from simmim_ray.data.image_decode import MAX_PIXELS, ImageRefused, decode, decode_rgb

SIDE = 16  # the streamed path resizes to model.img_size: at the image's own size the resize keeps every pixel


def streamed(data: bytes) -> np.ndarray | None:
    """The streamed path's uint8 [3, SIDE, SIDE] for one SIDE x SIDE image, or None when the row is not valid."""
    cfg = Config.from_dict({"model": {"img_size": SIDE, "patch_size": 4, "embed_dim": 16, "depth": 1,
                                      "num_heads": 2}, "data": {"source": "parquet", "path": "x"}})
    out = StreamTransform(cfg, "eval")(pa.table({"image": pa.array([data], pa.binary()),
                                                 "label": pa.array([0], pa.int64())}))
    return out["img"][0] if out["valid"][0] else None


def both(data: bytes) -> np.ndarray:
    """The in-memory and the streamed decode of `data`, which must agree; -> [3, H, W] uint8."""
    x = decode(data)
    assert x.dtype == torch.uint8 and x.shape[0] == 3
    s = streamed(data)
    assert s is not None and s.dtype == np.uint8 and np.array_equal(s, x.numpy())
    return x.numpy()


def encoded(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def gradient16() -> np.ndarray:
    """SIDE x SIDE uint16: pixel k (in raster order) holds k * 256 plus a low byte that varies, up to 65535."""
    k = np.arange(SIDE * SIDE, dtype=np.uint32).reshape(SIDE, SIDE)
    return (k * 256 + (k * 37) % 256).astype(np.uint16)


def test_a_16_bit_gray_png_keeps_its_high_byte_not_its_low_byte():
    """16-bit grey went through the streamed decode as uint16 and was stored into uint8 by wrap-around: the model
    saw the low byte. Now both paths give value >> 8, so the gradient stays a gradient."""
    g = gradient16()
    for data in (raw_png(g), encoded(Image.fromarray(g))):  # our own PNG writer and Pillow's (mode I;16)
        x = both(data)
        expected = (g >> 8).astype(np.uint8)
        assert all(np.array_equal(x[c], expected) for c in range(3))
        assert not np.array_equal(x[0], (g & 0xFF).astype(np.uint8))  # not the wrapped low byte


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16_bit_colour_pngs_keep_their_high_bytes(channels):
    g = gradient16()
    planes = [g, g[::-1], g.T, 65535 - g][:channels]  # distinct planes: a channel mix-up shows
    x = both(raw_png(np.stack(planes, axis=-1)))
    hi = [(p >> 8).astype(np.uint8) for p in planes]
    expected = [hi[0]] * 3 if channels == 2 else hi[:3]  # gray + alpha: gray in every channel; alpha dropped
    assert all(np.array_equal(x[c], expected[c]) for c in range(3))


@pytest.mark.parametrize("transparency", [False, True])
def test_palette_images_give_their_palette_colours(transparency):
    palette = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)
    idx = np.arange(SIDE * SIDE, dtype=np.uint8).reshape(SIDE, SIDE)
    img = Image.fromarray(idx, mode="P")
    img.putpalette(palette.ravel().tolist())
    if transparency:
        img.info["transparency"] = 3
    x = both(encoded(img))
    assert np.array_equal(x.transpose(1, 2, 0), palette[idx])  # the transparent entry keeps its colour too


def test_la_rgba_and_one_bit_images():
    lum = np.arange(SIDE * SIDE, dtype=np.uint8).reshape(SIDE, SIDE)
    alpha = np.full_like(lum, 7)
    x = both(encoded(Image.fromarray(np.stack([lum, alpha], -1), mode="LA")))
    assert all(np.array_equal(x[c], lum) for c in range(3))  # alpha dropped, not composited
    rgb = np.stack([lum, lum[::-1], lum.T], -1)
    x = both(encoded(Image.fromarray(np.concatenate([rgb, alpha[..., None]], -1), mode="RGBA")))
    assert np.array_equal(x.transpose(1, 2, 0), rgb)
    bits = Image.fromarray(lum > 100).convert("1")
    x = both(encoded(bits))
    assert np.array_equal(x[0], np.where(lum > 100, 255, 0))


def test_cmyk_images_convert_as_pillow_converts_them():
    rgb = np.random.default_rng(1).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    tiff = encoded(cmyk, "TIFF")  # lossless: exactly Pillow's CMYK -> RGB
    assert np.array_equal(both(tiff).transpose(1, 2, 0), np.asarray(Image.open(io.BytesIO(tiff)).convert("RGB")))
    red = both(encoded(Image.new("CMYK", (SIDE, SIDE), (0, 255, 255, 0)), "JPEG"))  # simplejpeg reads CMYK JPEGs
    assert (np.abs(red.astype(int) - np.array([255, 0, 0])[:, None, None]) <= 2).all()


def test_32_bit_images_are_read_as_16_bit_or_refused():
    g = gradient16().astype(np.int32)
    x = both(encoded(Image.fromarray(g, mode="I"), "TIFF"))
    assert np.array_equal(x[0], (g >> 8).astype(np.uint8))
    for arr, mode, rule in ((g - 1, "I", rf"mode I \(32-bit integer\) holds values -1\.\.{g.max() - 1}; `0 <= "
                                         rf"value <= 65535` must hold"),
                            (g.astype(np.float32), "F", r"mode F \(32-bit float\) has no defined range")):
        data = encoded(Image.fromarray(arr, mode=mode), "TIFF")
        with pytest.raises(ImageRefused, match=rule):
            decode(data)
        assert streamed(data) is None  # the streamed path skips it (valid = False) as any unreadable row


@pytest.fixture
def loads(monkeypatch) -> list[tuple[int, int]]:
    """The sizes of every image Pillow or simplejpeg decodes (allocates) from here on."""
    seen: list[tuple[int, int]] = []
    pil_load, jpeg = ImageFile.ImageFile.load, image_decode.simplejpeg.decode_jpeg

    def load(self):
        seen.append(self.size)
        return pil_load(self)

    def decode_jpeg(data, *a, **k):
        h, w, _, _ = image_decode.simplejpeg.decode_jpeg_header(data)
        seen.append((w, h))
        return jpeg(data, *a, **k)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    monkeypatch.setattr(image_decode.simplejpeg, "decode_jpeg", decode_jpeg)
    return seen


@pytest.mark.parametrize("make,rule", [
    (lambda: png_bomb(20_000, 20_000), r"^400,000,000 pixels; `pixels <= 89,478,485` must hold"),  # Pillow's open
    (lambda: png_bomb(10_000, 10_000), r"^10000x10000 is 100,000,000 pixels; `pixels <= 89,478,485` must hold"),
    (lambda: jpeg_bomb(20_000, 20_000), r"^20000x20000 is 400,000,000 pixels; `pixels <= 89,478,485` must hold"),
])
def test_a_decompression_bomb_is_refused_from_its_header(loads, make, rule):
    data = make()
    assert len(data) < 100_000
    with pytest.raises(ImageRefused, match=rule):
        decode(data)
    assert decode_rgb(data) is None and streamed(data) is None
    good = encoded(Image.new("RGB", (SIDE, SIDE), (1, 2, 3)))
    assert streamed(good) is not None
    assert set(loads) == {(SIDE, SIDE)}  # only the good image was ever decoded
    assert MAX_PIXELS == Image.MAX_IMAGE_PIXELS  # the limit Pillow's users know


def test_unreadable_bytes_name_what_failed():
    with pytest.raises(ImageRefused, match="no image bytes"):
        decode(b"")
    with pytest.raises(ImageRefused, match="not an image Pillow reads"):
        decode(b"GIF89a but not really" * 3)
    png = encoded(Image.new("RGB", (64, 64), (9, 9, 9)))
    with pytest.raises(ImageRefused, match=r"^PNG data does not decode \("):
        decode(png[: len(png) // 2])


# ---- property: any grey gradient, in any mode and bit depth, comes out uint8, grey and monotone ---------------
STORED = st.sampled_from(["raw-gray", "raw-gray-alpha", "raw-rgb", "raw-rgba", "L", "LA", "P", "I;16", "I", "RGB",
                          "CMYK"])


def stored(values: np.ndarray, depth: int, how: str, fmt: str) -> bytes:
    """One row of grey `values` (of `depth` bits) stored `how`."""
    row = values[None, :]
    if how.startswith("raw"):
        channels = {"raw-gray": 1, "raw-gray-alpha": 2, "raw-rgb": 3, "raw-rgba": 4}[how]
        dtype = np.uint16 if depth == 16 else np.uint8
        arr = np.repeat(row[..., None], channels, axis=-1).astype(dtype)
        return raw_png(arr if channels > 1 else arr[..., 0])
    if how in ("I;16", "I"):
        img = Image.fromarray(row.astype(np.uint16 if how == "I;16" else np.int32))
        assert img.mode == how
    else:
        img = Image.fromarray(row.astype(np.uint8), mode="L").convert(how)
    return encoded(img, "TIFF" if how in ("I", "CMYK") else fmt)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 65535), min_size=2, max_size=64), st.sampled_from([8, 16]), STORED,
       st.sampled_from(["PNG", "TIFF"]))
def test_grey_gradients_decode_to_monotone_uint8_in_every_mode(levels, depth, how, fmt):
    if how not in ("I;16", "I") and not how.startswith("raw"):
        depth = 8  # Pillow's 8-bit modes
    if how in ("I;16", "I"):
        depth = 16
    values = np.sort(np.asarray(levels) >> (16 - depth))  # a gradient: non-decreasing along the row
    x = decode(stored(values, depth, how, fmt))
    assert x.dtype == torch.uint8 and tuple(x.shape) == (3, 1, len(values))
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # grey stays grey
    row = x[0, 0].numpy().astype(int)
    assert (np.diff(row) >= 0).all()  # monotone in the input
    assert np.array_equal(row, values >> 8 if depth == 16 else values)  # the high byte, never wrapped
