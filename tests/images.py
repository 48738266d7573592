"""Small real images, made on the fly, in the formats and modes the workflow must handle."""

import io

import numpy as np
from PIL import Image


def noise(size=(64, 48), seed=0, mode="RGB") -> Image.Image:
    """A distinct image per seed, so that each has its own content id."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "CMYK": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(), mode if mode != "L" else None)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg(seed=0, size=(64, 48), **options) -> bytes:
    return encode(noise(size, seed), "JPEG", **options)


def png(seed=0, size=(64, 48), mode="RGB") -> bytes:
    return encode(noise(size, seed, mode), "PNG")


def rotated_jpeg(seed=0, size=(64, 48)) -> bytes:
    """A JPEG stored landscape whose EXIF says to turn it a quarter (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(noise(size, seed), "JPEG", exif=exif)


def cmyk_jpeg(seed=0, size=(64, 48)) -> bytes:
    return encode(noise(size, seed, "CMYK"), "JPEG")


def palette_png(seed=0, size=(64, 48)) -> bytes:
    """A palette image whose colour 0 is transparent."""
    image = noise(size, seed).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(image, "PNG", transparency=0)


def gif(seed=0, size=(64, 48)) -> bytes:
    return encode(noise(size, seed).convert("P", palette=Image.Palette.ADAPTIVE), "GIF")


def webp(seed=0, size=(64, 48)) -> bytes:
    return encode(noise(size, seed), "WEBP")


def truncated_jpeg(seed=0, size=(64, 48)) -> bytes:
    data = jpeg(seed, size)
    return data[: len(data) // 2]
