import tarfile
import zipfile

import pytest

from imgclf.demo import DIGIT_NAMES, write_digits
from imgclf.sources import (
    SourceError,
    archive_dir_name,
    class_urls,
    fetch_archive,
    list_images,
    read_url_list,
    search_images,
)

from . import images
from .http_server import Route


def test_url_lists_skip_blanks_comments_and_repeats():
    text = "# bears\nhttp://a/1.jpg\n\n  http://a/2.jpg  \nhttp://a/1.jpg\n# end\nhttp://a/3.jpg#frag\n"
    assert read_url_list(text) == ["http://a/1.jpg", "http://a/2.jpg", "http://a/3.jpg#frag"]


@pytest.fixture
def pets(tmp_path):
    """Oxford-IIIT Pet style: the label is in the file name."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ["american_bulldog_1.jpg", "american_bulldog_2.JPG", "Abyssinian_1.jpg"]:
        (folder / name).write_bytes(images.jpeg())
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_a_folder_lists_its_images(pets):
    assert [path.split("/")[-1] for path in list_images(pets)] == [
        "Abyssinian_1.jpg",
        "american_bulldog_1.jpg",
        "american_bulldog_2.JPG",
    ]


def test_a_pattern_picks_the_images_of_one_label(pets):
    pattern = r"^(.+)_\d+\.jpe?g$"
    bulldogs = list_images(pets, pattern, "american_bulldog")
    assert [path.split("/")[-1] for path in bulldogs] == ["american_bulldog_1.jpg"]
    assert list_images(pets, r"(?i)^(.+)_\d+\.jpe?g$", "american_bulldog")[1].endswith(".JPG")
    assert list_images(pets, pattern, "beagle") == []


def test_a_pattern_can_match_folders(tmp_path):
    for split in ["train", "val"]:
        for label in ["ants", "bees"]:
            (tmp_path / split / label).mkdir(parents=True)
            (tmp_path / split / label / "1.jpg").write_bytes(images.jpeg())
    ants = list_images(tmp_path, "(ants|bees)/", "ants")
    assert [path.split(str(tmp_path))[1] for path in ants] == [
        "/train/ants/1.jpg",
        "/val/ants/1.jpg",
    ]


def make_archive(tmp_path, kind):
    members = {"images/cat_1.jpg": images.jpeg(1), "images/dog_1.jpg": images.jpeg(2)}
    path = tmp_path / f"pets.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
    else:
        source = tmp_path / "source"
        for name, data in members.items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(data)
        with tarfile.open(path, "w:gz") as archive:
            archive.add(source / "images", arcname="images")
    return path


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_local_archive_is_unpacked(tmp_path, kind):
    dest = tmp_path / "out"
    fetch_archive(str(make_archive(tmp_path, kind)), dest)
    assert class_urls("archive", {"pattern": r"(\w+)_\d+\.jpg"}, "dog", [str(dest)]) == [
        str(dest / "images" / "dog_1.jpg")
    ]


def test_an_archive_is_downloaded_by_url(server, tmp_path):
    server.routes["/pets.tar.gz"] = Route(make_archive(tmp_path, "tar.gz").read_bytes())
    dest = tmp_path / "out"
    fetch_archive(server.url("/pets.tar.gz"), dest)
    assert len(list_images(dest)) == 2
    assert not list(tmp_path.glob("*.download"))


def test_an_archive_that_is_missing_online_is_a_clear_error(server, tmp_path):
    with pytest.raises(SourceError, match="cannot download archive .*404"):
        fetch_archive(server.url("/absent.tar.gz"), tmp_path / "out")


def test_archive_folders_are_unique_per_location():
    first = archive_dir_name("https://example.org/a/images.tar.gz")
    assert first.startswith("images-")
    assert first != archive_dir_name("https://example.org/b/images.tar.gz")


def test_a_tar_member_outside_the_archive_is_refused(tmp_path):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("../escaped.jpg")
        archive.addfile(info)
    with pytest.raises(tarfile.OutsideDestinationError):
        fetch_archive(str(path), tmp_path / "out")
    assert not (tmp_path / "escaped.jpg").exists()


def test_search_offline_fails_naming_the_query(monkeypatch):
    # A closed port on loopback stands in for the internet, so no traffic leaves this machine.
    monkeypatch.setenv("DDGS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(SourceError, match="image search for 'grizzly bear' failed"):
        search_images("grizzly bear", 10)


def test_a_source_with_no_images_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="class 'dog': its folder source gives no images"):
        class_urls("folder", {"folder": str(tmp_path)}, "dog", [])


def test_the_demo_writes_every_digit(tmp_path):
    write_digits(tmp_path)
    counts = {name: len(list_images(tmp_path / name)) for name in DIGIT_NAMES}
    assert sum(counts.values()) == 1797 and min(counts.values()) > 170
