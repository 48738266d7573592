import io
import logging
import stat
import tarfile
import zipfile

import pytest

from imgclf.archives import Limits, fetch_archive
from imgclf.demo import DIGIT_NAMES, write_digits
from imgclf.files import WriteFailed
from imgclf.sources import (
    SourceError,
    archive_dir_name,
    class_max_images,
    class_urls,
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


def test_a_url_list_is_capped_by_default_and_the_users_own_images_are_not():
    assert class_max_images({"urls": "cats.txt"}, url_list_cap=1000) == 1000
    assert class_max_images({"search": "cats", "max_results": 200}, 1000) == 1000
    assert class_max_images({"folder": "photos/cats"}, 1000) is None
    assert class_max_images({"archive": "cats.tar"}, 1000) is None
    assert class_max_images({"folder": "photos/cats", "max_images": 5}, 1000) == 5
    assert class_max_images({"urls": "cats.txt", "max_images": 5000}, 1000) == 5000


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


@pytest.fixture
def limits():
    return Limits(max_bytes=10_000_000, max_members=100, max_ratio=100, deadline=5)


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
def test_a_local_archive_is_unpacked(tmp_path, kind, limits):
    dest = tmp_path / "out"
    fetch_archive(str(make_archive(tmp_path, kind)), dest, limits)
    assert class_urls("archive", {"pattern": r"(\w+)_\d+\.jpg"}, "dog", [str(dest)]) == [
        str(dest / "images" / "dog_1.jpg")
    ]


def test_an_archive_that_fills_the_disk_is_a_disk_error_not_a_bad_archive(tmpfs, tmp_path, limits):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        for index in range(20):
            opened.writestr(f"images/dog_{index}.jpg", images.jpeg(index, (200, 200), quality=100))
    disk = tmpfs(tmp_path / "disk", "64k")
    with pytest.raises(WriteFailed, match=f"cannot write to {disk}/out: No space left on device"):
        fetch_archive(str(archive), disk / "out", limits)


def test_an_archive_is_downloaded_by_url(server, tmp_path, limits):
    server.routes["/pets.tar.gz"] = Route(make_archive(tmp_path, "tar.gz").read_bytes())
    dest = tmp_path / "out"
    fetch_archive(server.url("/pets.tar.gz"), dest, limits)
    assert len(list_images(dest)) == 2
    assert not list(tmp_path.glob("*.download"))


def test_an_archive_that_is_missing_online_is_a_clear_error(server, tmp_path, limits):
    with pytest.raises(SourceError, match="cannot download archive .*404"):
        fetch_archive(server.url("/absent.tar.gz"), tmp_path / "out", limits)


def test_an_archive_download_past_its_deadline_is_refused(server, tmp_path, limits):
    limits.deadline = 1
    server.routes["/slow.tar.gz"] = Route(
        make_archive(tmp_path, "tar.gz").read_bytes(), trickle=0.05
    )
    with pytest.raises(SourceError, match="slow.tar.gz.*deadline of 1 s"):
        fetch_archive(server.url("/slow.tar.gz"), tmp_path / "out", limits)
    assert not list(tmp_path.glob("*.download"))


def test_archive_folders_are_unique_per_location():
    first = archive_dir_name("https://example.org/a/images.tar.gz")
    assert first.startswith("images-")
    assert first != archive_dir_name("https://example.org/b/images.tar.gz")


@pytest.mark.parametrize("name", ["../escaped.jpg", "/tmp/escaped.jpg", "a/../../escaped.jpg"])
def test_a_member_outside_the_archive_refuses_it_naming_both(tmp_path, limits, name):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as archive:
        archive.addfile(tarfile.TarInfo(name))
    with pytest.raises(SourceError, match=f"archive {path} refused: member .* outside"):
        fetch_archive(str(path), tmp_path / "out", limits)
    assert not (tmp_path / "escaped.jpg").exists()
    assert not (tmp_path / "out").exists()


def add_member(archive, name, data=b"", **fields):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for field, value in fields.items():
        setattr(info, field, value)
    archive.addfile(info, io.BytesIO(data))


def test_only_files_and_folders_come_out_of_a_tar(tmp_path, limits, caplog):
    """A link, however it points, could be written through (CVE-2025-4517): none is made."""
    outside = tmp_path / "outside"
    outside.mkdir()
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as archive:
        add_member(archive, "images/cat_1.jpg", images.jpeg(1))
        add_member(archive, "escape", type=tarfile.SYMTYPE, linkname=str(outside))
        add_member(archive, "escape/planted.jpg", images.jpeg(2))
        add_member(archive, "hard", type=tarfile.LNKTYPE, linkname="/etc/passwd")
        add_member(archive, "fifo", type=tarfile.FIFOTYPE)
        add_member(archive, "null", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
    dest = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        fetch_archive(str(path), dest, limits)
    assert list(outside.iterdir()) == []
    found = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*"))
    assert found == ["escape", "escape/planted.jpg", "images", "images/cat_1.jpg"]
    assert all(not p.is_symlink() for p in dest.rglob("*"))
    assert "skipped 4 members" in caplog.text


def test_a_zip_symlink_member_is_skipped(tmp_path, limits):
    path = tmp_path / "links.zip"
    with zipfile.ZipFile(path, "w") as archive:
        link = zipfile.ZipInfo("escape")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, str(tmp_path))
        archive.writestr("cat_1.jpg", images.jpeg(1))
    dest = tmp_path / "out"
    fetch_archive(str(path), dest, limits)
    assert sorted(p.name for p in dest.iterdir()) == ["cat_1.jpg"]


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_an_archive_bomb_is_refused_and_leaves_nothing(tmp_path, limits, kind):
    path = tmp_path / f"bomb.{kind}"
    zeros = bytes(2_000_000)  # compresses about a thousand times
    if kind == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("zeros.bmp", zeros)
    else:
        with tarfile.open(path, "w:gz") as archive:
            add_member(archive, "zeros.bmp", zeros)
    with pytest.raises(SourceError, match=f"bomb.{kind} refused: .*max_ratio=100"):
        fetch_archive(str(path), tmp_path / "out", limits)
    assert not (tmp_path / "out").exists()


def test_an_archive_past_its_member_or_byte_limit_is_refused(tmp_path, limits):
    path = tmp_path / "many.tar"
    with tarfile.open(path, "w") as archive:
        for index in range(101):
            add_member(archive, f"{index}.jpg", images.jpeg(index))
    with pytest.raises(SourceError, match="more than max_members=100 members"):
        fetch_archive(str(path), tmp_path / "out", limits)
    limits.max_members, limits.max_bytes = 1000, 1000
    with pytest.raises(SourceError, match="more than 1000 bytes"):
        fetch_archive(str(path), tmp_path / "out", limits)


def test_a_file_that_is_no_archive_is_a_clear_error(tmp_path, limits):
    path = tmp_path / "photos.zip"
    path.write_bytes(images.jpeg(1))
    with pytest.raises(SourceError, match="photos.zip refused: it is neither a tar nor a zip"):
        fetch_archive(str(path), tmp_path / "out", limits)


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


def test_a_tar_of_a_folder_with_its_dot_entry_unpacks(tmp_path, limits):
    """`tar -C photos -cf photos.tar .` names its first member './', as many archives do."""
    path = tmp_path / "dot.tar"
    with tarfile.open(path, "w") as archive:
        add_member(archive, "./", type=tarfile.DIRTYPE)
        add_member(archive, "./cat_1.jpg", images.jpeg(1))
    fetch_archive(str(path), tmp_path / "out", limits)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["cat_1.jpg"]
