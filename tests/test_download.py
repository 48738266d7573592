from pathlib import Path

import pandas as pd
import pytest

from imgclf.download import download_urls, image_extension, local_path

from . import images
from .http_server import Route


def by_url(table: pd.DataFrame) -> dict[str, dict]:
    return {row["url"]: row for row in table.to_dict("records")}


def test_image_extension_reads_magic_bytes_not_names():
    assert image_extension(images.jpeg()) == ".jpg"
    assert image_extension(images.png()) == ".png"
    assert image_extension(images.gif()) == ".gif"
    assert image_extension(images.webp()) == ".webp"
    assert image_extension(b"<!doctype html><html>") is None
    assert image_extension(b"") is None


def test_local_path_takes_file_urls_and_plain_paths():
    assert str(local_path("file:///data/a%20b.jpg")) == "/data/a b.jpg"
    assert str(local_path("photos/a.jpg")) == "photos/a.jpg"
    assert local_path("https://example.org/a.jpg") is None
    assert local_path("ftp://example.org/a.jpg") is None


def test_every_outcome_is_a_row_with_its_reason(server, tmp_path, download_settings):
    server.routes.update(
        {
            "/a.jpg": Route(images.jpeg(1)),
            "/b.png": Route(images.png(2), content_type="image/png"),
            "/c.webp": Route(images.webp(3), content_type="image/webp"),
            "/d.gif": Route(images.gif(4), content_type="image/gif"),
            "/png-named.jpg": Route(images.png(5)),
            "/copy-of-a.jpg": Route(images.jpeg(1)),
            "/flaky.jpg": Route(images.jpeg(6), fail_first=1),
            "/down.jpg": Route(images.jpeg(7), fail_first=10),
            "/page.jpg": Route(b"<!doctype html><p>gone</p>", content_type="text/html"),
            "/big.jpg": Route(images.jpeg(8, size=(400, 400), quality=100)),
            "/big-no-length.jpg": Route(
                images.jpeg(9, size=(400, 400), quality=100), send_length=False
            ),
            "/slow.jpg": Route(images.jpeg(10), delay=3),
            "/moved": Route(status=302, headers={"Location": "/a-moved.jpg"}),
            "/a-moved.jpg": Route(images.jpeg(11)),
            "/to-ftp": Route(status=302, headers={"Location": "ftp://127.0.0.1/x.jpg"}),
            "/to-file": Route(status=302, headers={"Location": "file:///etc/passwd"}),
            "/truncated.jpg": Route(images.truncated_jpeg(12)),
        }
    )
    local = tmp_path / "local.png"
    local.write_bytes(images.png(13))
    urls = [server.url(path) for path in server.routes] + [
        server.url("/missing.jpg"),
        "ftp://127.0.0.1/a.jpg",
        str(local),
        local.as_uri(),
        str(tmp_path / "absent.jpg"),
        "http://127.0.0.1:9/refused.jpg",
    ]
    store = tmp_path / "store"
    rows = by_url(download_urls(urls, store, download_settings))

    def outcome(path):
        row = rows[server.url(path) if path.startswith("/") else path]
        return row["status"], row["http_code"]

    for path in ["/a.jpg", "/b.png", "/c.webp", "/d.gif", "/flaky.jpg", "/truncated.jpg"]:
        assert outcome(path) == ("ok", 200), path
    assert rows[server.url("/png-named.jpg")]["path"].endswith(".png")
    assert outcome("/copy-of-a.jpg") == ("duplicate", 200)
    assert rows[server.url("/copy-of-a.jpg")]["id"] == rows[server.url("/a.jpg")]["id"]
    assert server.requests["/flaky.jpg"] == 2  # one 500, then the image
    assert outcome("/down.jpg") == ("http_error", 500)
    assert server.requests["/down.jpg"] == 1 + download_settings.retries
    assert outcome("/missing.jpg") == ("http_error", 404)
    assert server.requests["/missing.jpg"] == 1  # a 4xx is not retried
    assert outcome("/page.jpg") == ("not_image", 200)
    assert outcome("/big.jpg")[0] == "too_large"
    assert outcome("/big-no-length.jpg")[0] == "too_large"
    assert outcome("/slow.jpg")[0] == "timeout"
    assert server.requests["/slow.jpg"] == 1  # a read timeout is not retried
    assert outcome("/moved") == ("ok", 200)
    assert rows[server.url("/moved")]["id"] == rows[server.url("/a-moved.jpg")]["id"]
    assert outcome("/to-ftp")[0] == "unsupported_scheme"
    assert outcome("/to-file")[0] == "unsupported_scheme"
    assert rows["ftp://127.0.0.1/a.jpg"]["status"] == "unsupported_scheme"
    assert rows[str(local)]["status"] == "ok"
    assert rows[local.as_uri()]["status"] == "duplicate"
    assert rows[str(tmp_path / "absent.jpg")]["status"] == "file_error"
    assert rows["http://127.0.0.1:9/refused.jpg"]["status"] == "connection_error"

    for row in rows.values():
        assert row["error"] or row["status"] in ("ok", "duplicate"), row
        if row["status"] == "ok":
            stored = Path(row["path"])
            assert stored.parent == store and stored.stem == row["id"]
            assert stored.stat().st_size == row["bytes"]
    assert not list(store.glob("*.part")) and not list(store.glob(".*.part"))
    kept = {path.name for path in store.iterdir()} - {"journal.jsonl"}
    assert len(kept) == sum(row["status"] == "ok" for row in rows.values())


def test_max_images_keeps_the_first_in_url_order(server, tmp_path, download_settings):
    for index in range(10):
        server.routes[f"/{index}.jpg"] = Route(images.jpeg(index), delay=0.05 * (9 - index))
    urls = [server.url(f"/{index}.jpg") for index in range(10)]
    download_settings.max_images = 3
    table = download_urls(urls, tmp_path, download_settings)
    assert list(table["status"]) == ["ok"] * 3 + ["skipped"] * 7
    assert len(list(tmp_path.glob("*.jpg"))) == 3


def test_rerun_fetches_only_what_is_missing(server, tmp_path, download_settings):
    for index in range(4):
        server.routes[f"/{index}.jpg"] = Route(images.jpeg(index))
    server.routes["/flaky.jpg"] = Route(images.jpeg(9), fail_first=5)
    urls = [server.url(path) for path in server.routes]
    first = download_urls(urls, tmp_path, download_settings)
    assert list(first["status"]) == ["ok"] * 4 + ["http_error"]

    server.requests.clear()
    server.routes["/flaky.jpg"].fail_first = 0
    (tmp_path / first["path"][0].split("/")[-1]).unlink()  # lost since the last run
    (tmp_path / ".123-456.part").write_bytes(b"half an image")  # left by an interruption
    with open(tmp_path / "journal.jsonl", "a") as journal:
        journal.write('{"url": "http://127.0.0.1/cut-off')  # a line cut off by an interruption
    second = download_urls(urls, tmp_path, download_settings)

    assert list(second["status"]) == ["ok"] * 5
    assert set(server.requests) == {"/0.jpg", "/flaky.jpg"}
    assert list(second["id"][:4]) == list(first["id"][:4])
    assert not (tmp_path / ".123-456.part").exists()


@pytest.mark.parametrize("workers", [1, 8])
def test_result_does_not_depend_on_concurrency(server, tmp_path, download_settings, workers):
    for index in range(12):
        server.routes[f"/{index}.jpg"] = Route(images.jpeg(index % 5), delay=0.01 * (index % 3))
    urls = [server.url(f"/{index}.jpg") for index in range(12)]
    download_settings.workers = workers
    table = download_urls(urls, tmp_path, download_settings)
    assert list(table["status"]) == ["ok"] * 5 + ["duplicate"] * 7
