from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from imgclf.verify import Rejected, normalise_image, summarise, to_rgb, verify_downloads

from . import images


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_exif_rotation_is_applied(tmp_path, verify_settings):
    source = write(tmp_path / "rotated.jpg", images.rotated_jpeg(size=(40, 20)))
    result = normalise_image(source, tmp_path / "out", "r", verify_settings)
    assert (result["width"], result["height"]) == (20, 40)
    with Image.open(result["path"]) as out:
        assert out.size == (20, 40) and out.mode == "RGB" and out.format == "JPEG"


@pytest.mark.parametrize(
    "data", [images.cmyk_jpeg(), images.palette_png(), images.png(mode="RGBA"), images.gif()]
)
def test_every_mode_becomes_rgb(tmp_path, verify_settings, data):
    source = write(tmp_path / "in", data)
    result = normalise_image(source, tmp_path / "out", "x", verify_settings)
    with Image.open(result["path"]) as out:
        assert out.mode == "RGB"


def test_transparency_is_laid_on_white():
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert to_rgb(clear).getpixel((0, 0)) == (255, 255, 255)


def test_large_images_shrink_to_max_size_keeping_their_shape(tmp_path, verify_settings):
    source = write(tmp_path / "big.jpg", images.jpeg(size=(400, 200)))
    result = normalise_image(source, tmp_path / "out", "big", verify_settings)
    assert (result["width"], result["height"]) == (40, 20)


@pytest.mark.parametrize(
    "data, reason",
    [
        (images.truncated_jpeg(size=(200, 200)), "cannot decode"),
        (b"<html>not an image</html>", "not an image"),
        (images.png(size=(10, 60)), "too small"),
        (images.png(size=(2000, 1000)), "decompression bomb"),
    ],
)
def test_bad_images_are_rejected_with_a_reason(tmp_path, verify_settings, data, reason):
    source = write(tmp_path / "bad", data)
    with pytest.raises(Rejected, match=reason):
        normalise_image(source, tmp_path / "out", "bad", verify_settings)
    assert not list((tmp_path / "out").glob("*"))


def download_row(url, status="ok", image_id="", path="", error=""):
    return {"url": url, "status": status, "id": image_id, "path": path, "error": error}


def test_verify_downloads_sorts_images_into_manifest_and_rejected(tmp_path, verify_settings):
    files = {
        name: write(tmp_path / "dl" / f"{name}.img", data)
        for name, data in {
            "cat1": images.jpeg(1),
            "cat2": images.png(2),
            "shared": images.jpeg(3),
            "placeholder": images.png(4),
            "broken": images.truncated_jpeg(5, size=(200, 200)),
        }.items()
    }
    downloads = {
        "cat": pd.DataFrame(
            [
                download_row("u/cat1", image_id="cat1", path=files["cat1"]),
                download_row("u/cat1-again", "duplicate", "cat1", files["cat1"]),
                download_row("u/cat2", image_id="cat2", path=files["cat2"]),
                download_row("u/shared-1", image_id="shared", path=files["shared"]),
                download_row("u/none-1", image_id="placeholder", path=files["placeholder"]),
                download_row("u/none-2", "duplicate", "placeholder", files["placeholder"]),
                download_row("u/broken", image_id="broken", path=files["broken"]),
                download_row("u/404", "http_error", error="HTTP 404 Not Found"),
            ]
        ),
        "dog": pd.DataFrame(
            [
                download_row("u/shared-2", image_id="shared", path=files["shared"]),
                download_row("u/none-3", image_id="placeholder", path=files["placeholder"]),
            ]
        ),
    }
    manifest, rejected = verify_downloads(downloads, tmp_path / "out", verify_settings, threads=2)

    assert manifest[["id", "label", "source"]].values.tolist() == [
        ["cat1", "cat", "u/cat1"],
        ["cat2", "cat", "u/cat2"],
    ]
    assert all(Path(path).exists() for path in manifest["path"])
    reasons = {(row.url, row.label): row.reason for row in rejected.itertuples()}
    assert reasons[("u/404", "cat")] == "http_error: HTTP 404 Not Found"
    assert reasons[("u/shared-1", "cat")].startswith("duplicate across classes: cat, dog")
    assert reasons[("u/shared-2", "dog")].startswith("duplicate across classes")
    assert reasons[("u/none-1", "cat")].startswith("placeholder: the same content came from 3")
    assert reasons[("u/none-2", "cat")] == reasons[("u/none-3", "dog")]
    assert reasons[("u/broken", "cat")].startswith("cannot decode")
    assert len(rejected) == 7  # a row per URL: 404, 2 shared, 3 placeholder, broken


def test_summary_counts_kept_and_rejected_images_by_kind_of_reason():
    manifest = pd.DataFrame({"label": ["ants", "ants", "bees"]})
    rejected = pd.DataFrame(
        {
            "label": ["ants", "bees", "bees"],
            "reason": [
                "http_error: 404 Not Found",
                "http_error: 500 Server Error",
                "placeholder: the same content came from 3 URLs",
            ],
        }
    )
    summary = summarise(manifest, rejected, ["ants", "bees", "wasps"]).set_index("class")
    assert summary.loc["ants"].tolist() == [2, 1, 1, 0]
    assert summary.loc["bees"].tolist() == [1, 2, 1, 1]
    assert summary.loc["wasps"].tolist() == [0, 0, 0, 0]
    assert list(summary.columns) == ["kept", "rejected", "http_error", "placeholder"]
