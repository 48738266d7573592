"""What the model sees at validation and prediction time, in Pillow alone.

It is one call of Pillow so that anyone can repeat it exactly without this project: export
writes PREPARE into model.json, and predict uses it without torch.
"""

from PIL import Image, ImageOps

PREPARE = (
    "PIL.ImageOps.fit(image.convert('RGB'), (size, size), PIL.Image.Resampling.BILINEAR): "
    "the centre square, resized; then as uint8 RGB, channels first (3, size, size)"
)


def square(image: Image.Image, size: int) -> Image.Image:
    """The centre square of an image, resized to size x size, in RGB."""
    return ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
