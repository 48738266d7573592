"""What the model sees of an image file, in Pillow and numpy alone.

verify stores every training image through `as_srgb`, and predict reads every file through it,
so a file is seen the same way in both. `square` is the rest: one call of Pillow that anyone can
repeat exactly without this project (export writes PREPARE into model.json).
"""

import io
import logging

import numpy as np
from PIL import Image, ImageCms, ImageOps

log = logging.getLogger(__name__)

PREPARE = (
    "imgclf.preprocess.as_srgb(image) (upright by its EXIF orientation, converted to sRGB by "
    "its ICC profile, 16-bit and float images scaled to 8 bits, transparency laid on white), "
    "then PIL.ImageOps.fit(image, (size, size), PIL.Image.Resampling.BILINEAR): the centre "
    "square, resized; then as uint8 RGB, channels first (3, size, size)"
)
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def eight_bits(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float greyscale image as 8-bit greyscale, scaled, not clipped.

    Pillow's convert clips these to 0..255, so a 16-bit photo comes out white. 16-bit images
    use their whole range (value / 257); 32-bit and float ones have no standard range, so
    theirs is stretched from the image's lowest value to its highest.
    """
    if image.mode not in HIGH_DEPTH_MODES:
        return image
    values = np.asarray(image, dtype=np.float32)
    if image.mode.startswith("I;16"):
        scaled = values / 257
    else:
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
        scaled = (np.nan_to_num(values, nan=low) - low) * (255 / max(high - low, 1e-12))
    return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8), "L")


def in_srgb(image: Image.Image) -> Image.Image:
    """The image converted from its ICC profile (Display P3, Adobe RGB, a CMYK press) to sRGB,
    the colours the pretrained model learned from; without a usable profile, as it is."""
    profile = image.info.get("icc_profile")
    if not profile or image.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return image
    output = "RGBA" if image.mode == "RGBA" else "RGB"
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return ImageCms.profileToProfile(image, source, SRGB, outputMode=output)
    except (ImageCms.PyCMSError, OSError, ValueError) as error:
        log.debug("ICC profile not applied: %s", error)
        return image


def on_white(image: Image.Image) -> Image.Image:
    """RGB with any transparency laid on white, as a photo of the object would show it."""
    if (image.mode == "P" and "transparency" in image.info) or image.mode in ("LA", "PA"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, "white")
        return Image.alpha_composite(white, image).convert("RGB")
    return image.convert("RGB")


def as_srgb(image: Image.Image) -> Image.Image:
    """A decoded image as verify stores it and predict reads it: upright 8-bit sRGB RGB."""
    return on_white(in_srgb(eight_bits(ImageOps.exif_transpose(image))))


def square(image: Image.Image, size: int) -> Image.Image:
    """The centre square of an image, resized to size x size, in RGB."""
    return ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
