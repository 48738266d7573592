"""Small real images, made on the fly, in the formats and modes the workflow must handle."""

import io
import struct
import zlib

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


def icc_rgb_profile(red, green, blue, gamma=2.2, name="test RGB") -> bytes:
    """A matrix/curve ICC v2 display profile with these primaries (XYZ under D50)."""

    def fixed(*values):
        return b"".join(struct.pack(">i", round(value * 65536)) for value in values)

    def xyz(values):
        return b"XYZ " + bytes(4) + fixed(*values)

    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    text = name.encode("ascii") + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8) + bytes(3 + 67)
    tags = {
        b"desc": desc,
        b"wtpt": xyz((0.9642, 1.0, 0.8249)),
        b"rXYZ": xyz(red),
        b"gXYZ": xyz(green),
        b"bXYZ": xyz(blue),
        b"rTRC": curve,
        b"gTRC": curve,
        b"bTRC": curve,
    }
    offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for signature, tag in tags.items():
        tag += bytes(-len(tag) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(tag))
        data += tag
    size = offset + len(data)
    header = (
        struct.pack(">I", size)
        + bytes(4)
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(24)
        + bytes(4)
        + fixed(0.9642, 1.0, 0.8249)
        + bytes(4)
        + bytes(16)
        + bytes(28)
    )
    assert len(header) == 128
    return header + table + data


# sRGB's primaries under D50, as ICC profiles give them.
SRGB_RED, SRGB_GREEN, SRGB_BLUE = (
    (0.4361, 0.2225, 0.0139),
    (0.3851, 0.7169, 0.0971),
    (
        0.1431,
        0.0606,
        0.7141,
    ),
)


def high_depth(values: np.ndarray, fmt: str) -> bytes:
    """A greyscale image of more than 8 bits: uint16 as PNG, int32 or float32 as TIFF."""
    return encode(Image.fromarray(values), fmt)


def with_profile(color: tuple[int, int, int], profile: bytes, fmt="PNG", size=(32, 32)) -> bytes:
    return encode(Image.new("RGB", size, color), fmt, icc_profile=profile)


def card(size=(300, 200)) -> Image.Image:
    """A site's flat "image not available" card: a grey field, an icon and a line of text."""
    from PIL import ImageDraw

    image = Image.new("RGB", size, (230, 230, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((120, 50, 180, 110), fill=(180, 180, 180))
    draw.text((70, 140), "image not available", fill=(90, 90, 90))
    return image


def png_header_only(width: int, height: int) -> bytes:
    """A decompression bomb's opening: a PNG that claims width x height in under 100 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
