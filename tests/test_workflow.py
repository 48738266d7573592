"""End-to-end runs of the four data stages on tiny images, through Snakemake.

These target the split: the classes here are shaped to test the data stages, not to train.
"""

import io
import re
import tarfile

import pandas as pd
import pytest
from PIL import Image

from imgclf.files import read_csv

from . import images
from .http_server import Route
from .workflow import planned_jobs, planned_rules, snakemake, write_config

CAT_ROUTES = {
    "/cat.jpg": Route(images.jpeg(1, size=(48, 40))),
    "/cat.png": Route(images.png(2, size=(40, 40)), content_type="image/png"),
    "/cat.webp": Route(images.webp(3, size=(40, 40)), content_type="image/webp"),
    "/cat.gif": Route(images.gif(4, size=(40, 40)), content_type="image/gif"),
    "/rotated.jpg": Route(images.rotated_jpeg(5, size=(40, 20))),
    "/cmyk.jpg": Route(images.cmyk_jpeg(6, size=(40, 40))),
    "/palette.png": Route(images.palette_png(7, size=(40, 40)), content_type="image/png"),
    "/rgba.png": Route(images.png(8, size=(40, 40), mode="RGBA"), content_type="image/png"),
    "/flaky.jpg": Route(images.jpeg(9, size=(40, 40)), fail_first=1),
    "/moved": Route(status=302, headers={"Location": "/cat-moved.jpg"}),
    "/cat-moved.jpg": Route(images.jpeg(10, size=(40, 40))),
    "/cat-copy.jpg": Route(images.jpeg(1, size=(48, 40))),
    "/truncated.jpg": Route(images.truncated_jpeg(11, size=(200, 200))),
    "/page.jpg": Route(b"<!doctype html><title>Moved</title>", content_type="text/html"),
    "/big.jpg": Route(images.jpeg(12, size=(600, 600), quality=100)),
    "/slow.jpg": Route(images.jpeg(13), delay=3),
    "/to-ftp": Route(status=302, headers={"Location": "ftp://127.0.0.1/cat.jpg"}),
    "/tiny.png": Route(images.png(14, size=(8, 8)), content_type="image/png"),
    "/no-image-1.png": Route(images.png(15, size=(40, 40)), content_type="image/png"),
    "/no-image-2.png": Route(images.png(15, size=(40, 40)), content_type="image/png"),
}
SPLIT = "results/split/split.csv"
NEW_IMAGES = {"fetch_urls", "download", "verify", "features", "split"}  # what a new image reruns
DOG_ROUTES = {
    "/no-image-3.png": Route(images.png(15, size=(40, 40)), content_type="image/png"),
    "/shared.jpg": Route(images.jpeg(16, size=(40, 40))),
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The four stages run once on tiny images from every kind of source; yields the folder."""
    from .http_server import ImageServer

    workdir = tmp_path_factory.mktemp("pipeline")
    with ImageServer({**CAT_ROUTES, **DOG_ROUTES}) as server:
        urls = [server.url(path) for path in CAT_ROUTES] + [server.url("/missing.jpg")]
        (workdir / "cat.txt").write_text("# cats\n" + "\n".join(urls) + "\n")
        (workdir / "dog.txt").write_text("\n".join(server.url(path) for path in DOG_ROUTES))
        birds = workdir / "photos" / "birds"
        birds.mkdir(parents=True)
        for index in range(6):
            (birds / f"{index}.jpg").write_bytes(images.jpeg(20 + index, size=(40, 30)))
        (birds / "shared.jpg").write_bytes(images.jpeg(16, size=(40, 40)))
        server.routes["/fish.tar.gz"] = Route(fish_archive(), content_type="application/gzip")
        write_config(
            workdir,
            {
                "seed": 3,
                "classes": {
                    "cat": {"urls": "cat.txt"},
                    "dog": {"urls": "dog.txt"},
                    "bird": {"folder": "photos/birds"},
                    "fish": {"archive": server.url("/fish.tar.gz"), "pattern": r"^(\w+)_\d+"},
                },
                "download": {
                    "max_bytes": 50_000,
                    "timeout": 1,
                    "backoff": 0.01,
                    "allow_local": True,
                },
                "verify": {"max_size": 32, "min_size": 16},
                "split": {"valid_pct": 0.3},
            },
        )
        snakemake(workdir, "--cores", "2", SPLIT)
        server.requests.clear()
        yield workdir, server


def fish_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in {
            "fish_1.jpg": images.jpeg(30, size=(40, 40)),
            "fish_2.jpg": images.jpeg(31, size=(40, 40)),
            "shark_1.jpg": images.jpeg(32, size=(40, 40)),
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_every_url_has_its_outcome(pipeline):
    workdir, server = pipeline
    cats = read_csv(workdir / "results/download/cat.csv")
    status = {url.rsplit("/", 1)[1]: row for url, row in cats.set_index("url").iterrows()}
    ok = [
        "cat.jpg",
        "cat.png",
        "cat.webp",
        "cat.gif",
        "rotated.jpg",
        "cmyk.jpg",
        "palette.png",
        "rgba.png",
        "flaky.jpg",
        "moved",
        "truncated.jpg",
        "tiny.png",
        "no-image-1.png",
    ]
    for name in ok:
        assert status[name]["status"] == "ok", name
    expected = {
        "cat-copy.jpg": ("duplicate", "200"),
        "no-image-2.png": ("duplicate", "200"),
        "page.jpg": ("not_image", "200"),
        "big.jpg": ("too_large", "200"),
        "slow.jpg": ("timeout", ""),
        "to-ftp": ("unsupported_scheme", "302"),
        "missing.jpg": ("http_error", "404"),
    }
    for name, (outcome, code) in expected.items():
        assert status[name]["status"] == outcome, name
        if outcome != "unsupported_scheme":
            assert status[name]["http_code"] == code, name
    assert len(cats) == len(CAT_ROUTES) + 1
    assert (workdir / "results/urls/bird.txt").read_text().count("\n") == 7
    assert (workdir / "results/urls/fish.txt").read_text().count("\n") == 2
    assert "100%" in (workdir / "logs/download/download.log").read_text()  # the progress bar


def test_the_manifest_holds_normalised_images(pipeline):
    workdir, _ = pipeline
    manifest = read_csv(workdir / "results/verify/manifest.csv")
    assert manifest.groupby("label").size().to_dict() == {"bird": 6, "cat": 10, "fish": 2}
    for row in manifest.itertuples():
        with Image.open(workdir / row.path) as image:
            image.load()
            assert image.mode == "RGB" and max(image.size) <= 32
            assert image.size == (int(row.width), int(row.height))
    rotated = manifest[manifest["source"].str.endswith("/rotated.jpg")].iloc[0]
    assert (rotated.width, rotated.height) == ("16", "32")  # stored 40x20, EXIF says turn it


def test_rejections_have_reasons(pipeline):
    workdir, _ = pipeline
    rejected = read_csv(workdir / "results/verify/rejected.csv")
    reasons = {(row.url.rsplit("/", 1)[1], row.label): row.reason for row in rejected.itertuples()}
    assert reasons[("truncated.jpg", "cat")].startswith("cannot decode")
    assert reasons[("tiny.png", "cat")].startswith("too small")
    assert reasons[("no-image-1.png", "cat")].startswith("placeholder")
    assert reasons[("no-image-3.png", "dog")].startswith("placeholder")
    assert reasons[("shared.jpg", "dog")] == "duplicate across classes: bird, dog"
    assert reasons[("shared.jpg", "bird")] == "duplicate across classes: bird, dog"
    assert reasons[("page.jpg", "cat")].startswith("not_image")
    assert reasons[("missing.jpg", "cat")] == "http_error: HTTP 404 Not Found"


def test_the_split_covers_the_manifest(pipeline):
    workdir, _ = pipeline
    manifest = read_csv(workdir / "results/verify/manifest.csv")
    split = read_csv(workdir / "results/split/split.csv")
    assert sorted(split["id"]) == sorted(manifest["id"])
    assert set(split["is_valid"]) == {"True", "False"}
    per_class = split.groupby("label")["is_valid"].agg(lambda valid: (valid == "True").sum())
    assert (per_class >= 1).all()
    for rule in ["fetch_urls/fetch_urls", "download/download", "verify/verify", "split/split"]:
        assert (workdir / "logs" / f"{rule}.log").exists()


def test_nothing_reruns_when_nothing_changed(pipeline):
    workdir, _ = pipeline
    assert planned_rules(workdir, SPLIT) == set()


def test_editing_labels_reruns_only_split_not_the_features(pipeline):
    workdir, _ = pipeline
    split = read_csv(workdir / "results/split/split.csv")
    cats = split[split["label"] == "cat"]["id"].tolist()
    labels = pd.DataFrame({"id": cats[:2], "label": ["bird", "drop"]})
    labels.to_csv(workdir / "labels.csv", index=False)
    assert planned_rules(workdir, SPLIT) == {"split"}
    snakemake(workdir, "--cores", "1", SPLIT)
    after = read_csv(workdir / "results/split/split.csv").set_index("id")
    assert after.loc[cats[0], "label"] == "bird" and cats[1] not in after.index
    unchanged = split.set_index("id").drop(index=cats[:2])
    assert after.loc[unchanged.index, "is_valid"].equals(unchanged["is_valid"])

    labels.assign(label=["dog", "drop"]).to_csv(workdir / "labels.csv", index=False)
    assert planned_rules(workdir, SPLIT) == {"split"}

    pd.DataFrame({"id": [cats[0]], "label": ["wolf"]}).to_csv(workdir / "labels.csv", index=False)
    failed = snakemake(workdir, "--cores", "1", SPLIT, check=False)
    assert failed.returncode != 0
    assert "label(s) that are not classes" in failed.stdout + failed.stderr
    (workdir / "labels.csv").unlink()
    assert planned_rules(workdir, SPLIT) == {"split"}
    snakemake(workdir, "--cores", "1", SPLIT)


def test_a_longer_url_list_downloads_only_what_is_new(pipeline):
    workdir, server = pipeline
    before = read_csv(workdir / "results/download/cat.csv")
    server.routes["/new-cat.jpg"] = Route(images.jpeg(40, size=(40, 40)))
    with open(workdir / "cat.txt", "a") as url_list:
        url_list.write(server.url("/new-cat.jpg") + "\n")
    assert planned_rules(workdir, SPLIT) == NEW_IMAGES
    snakemake(workdir, "--cores", "2", SPLIT)
    after = read_csv(workdir / "results/download/cat.csv")
    assert after["status"].tolist() == [*before["status"], "ok"]
    landed = before[before.status.isin(["ok", "duplicate"])]
    fetched_before = {url.rsplit("/", 1)[1] for url in landed.url}
    requested = {path.lstrip("/") for path in server.requests}
    assert "new-cat.jpg" in requested and not requested & fetched_before


def test_new_photos_in_a_folder_rerun_that_class(pipeline):
    workdir, _ = pipeline
    (workdir / "photos/birds/new.jpg").write_bytes(images.jpeg(41, size=(40, 30)))
    assert planned_rules(workdir, SPLIT) == NEW_IMAGES
    snakemake(workdir, "--cores", "2", SPLIT)
    birds = read_csv(workdir / "results/download/bird.csv")
    assert birds["url"].str.endswith("/new.jpg").any()


def test_the_report_builds(pipeline):
    workdir, _ = pipeline
    snakemake(workdir, "--report", str(workdir / "report.html"), SPLIT)
    assert "rejected.csv" in (workdir / "report.html").read_text()


def yaml_bomb(levels: int = 9) -> list:
    """Billion laughs: each level nine references to the one below; safe_dump writes aliases."""
    value = ["lol"] * 9
    for _ in range(levels - 1):
        value = [value] * 9
    return value


@pytest.mark.parametrize(
    "change, message",
    [
        ({"split": {"vaild_pct": 0.2}}, "'vaild_pct' was unexpected"),
        ({"laughs": yaml_bomb()}, r"expands to \d+ values through YAML aliases"),
        ({"download": {"timeout": "fast"}}, "'fast' is not of type 'number'"),
        ({"classes": {"cat": {"grab": "x.txt"}, "dog": {"urls": "dog.txt"}}}, "'grab'"),
        (
            {"classes": {"cat": {"urls": "nope.txt"}, "dog": {"urls": "dog.txt"}}},
            "classes.cat.urls: URL list file 'nope.txt' does not exist",
        ),
        (
            {"classes": {"cat": {"folder": "x", "pattern": "[a-"}, "dog": {"urls": "dog.txt"}}},
            "classes.cat.pattern: not a regular expression",
        ),
        (
            {"classes": {"cat": {"urls": "dog.txt", "folder": "."}, "dog": {"urls": "dog.txt"}}},
            "classes.cat: give exactly one source",
        ),
        ({"classes": {"dog": {"urls": "dog.txt"}}}, "should be non-empty|minProperties|at least"),
        (
            {"experiments": {"big": {"model": {"image_size": "huge"}}}},
            r"experiments.big: (?s:.*)'huge' is not of type 'integer'",
        ),
        ({"experiments": {"big": {"seed": 3}}}, "'seed' was unexpected"),
        ({"final_experiment": "big"}, "final_experiment: 'big' is not an experiment"),
    ],
)
def test_a_bad_config_fails_before_any_job_naming_the_key(tmp_path, change, message):
    (tmp_path / "dog.txt").write_text("http://127.0.0.1:9/dog.jpg\n")
    write_config(
        tmp_path, {"classes": {"cat": {"urls": "dog.txt"}, "dog": {"urls": "dog.txt"}}, **change}
    )
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert re.search(message, result.stdout + result.stderr)
    assert not (tmp_path / "results").exists()


def test_many_classes_are_one_fetch_and_one_download_job(tmp_path):
    """1,000 classes must not mean 2,000 Python start-ups: each class keeps its own list and
    table, written by one job for all."""
    classes = {}
    for index in range(300):
        folder = tmp_path / "photos" / f"class{index}"
        folder.mkdir(parents=True)
        (folder / "0.png").write_bytes(images.png(index, size=(20, 20)))
        classes[f"class{index}"] = {"folder": f"photos/class{index}"}
    write_config(tmp_path, {"classes": classes})
    planned = planned_jobs(tmp_path, "results/verify/manifest.csv")
    assert sorted(rule for rule, _ in planned) == ["download", "fetch_urls", "verify"]
