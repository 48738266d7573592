import gzip
import os
import time
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


def test_max_images_keeps_the_first_in_url_order_and_says_so(
    server, tmp_path, download_settings, caplog
):
    for index in range(10):
        server.routes[f"/{index}.jpg"] = Route(images.jpeg(index), delay=0.05 * (9 - index))
    urls = [server.url(f"/{index}.jpg") for index in range(10)]
    download_settings.max_images = 3
    table = download_urls(urls, tmp_path, download_settings)
    assert list(table["status"]) == ["ok"] * 3 + ["skipped"] * 7
    assert set(table["error"][3:]) == {"past max_images (3 images)"}
    assert len(list(tmp_path.glob("*.jpg"))) == 3
    assert "7 of 10 URLs left out: the class keeps at most max_images = 3" in caplog.text


def test_no_cap_keeps_every_image(server, tmp_path, download_settings, caplog):
    for index in range(5):
        server.routes[f"/{index}.jpg"] = Route(images.jpeg(index))
    download_settings.max_images = None
    table = download_urls([server.url(path) for path in server.routes], tmp_path, download_settings)
    assert list(table["status"]) == ["ok"] * 5 and "left out" not in caplog.text


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


def test_no_server_holds_a_url_past_its_deadline(server, tmp_path, download_settings):
    """timeout bounds each read; deadline bounds the URL: redirects, retries and body."""
    download_settings.timeout, download_settings.deadline = 0.5, 1.5
    server.routes.update(
        {
            "/trickle.jpg": Route(images.jpeg(1), trickle=0.2),  # a byte well within timeout
            "/stall.jpg": Route(images.jpeg(2), delay=0, trickle=3),  # headers, one byte, stall
            "/busy.jpg": Route(status=503, headers={"Retry-After": "15"}),
            "/loop-1": Route(status=302, headers={"Location": "/loop-2"}),
            "/loop-2": Route(status=302, headers={"Location": "/loop-1"}),
        }
    )
    rows = by_url(
        download_urls([server.url(path) for path in server.routes], tmp_path, download_settings)
    )

    def outcome(path):
        return rows[server.url(path)]["status"], rows[server.url(path)]["seconds"]

    for path in ("/trickle.jpg", "/stall.jpg"):
        status, seconds = outcome(path)
        assert status == "timeout" and seconds < download_settings.deadline + 0.3, path
    status, seconds = outcome("/busy.jpg")
    assert status == "http_error" and seconds < 1  # Retry-After is not waited for
    assert server.requests["/busy.jpg"] == 1 + download_settings.retries
    assert outcome("/loop-1")[0] == "http_error"
    assert "redirects" in rows[server.url("/loop-1")]["error"]


def test_a_class_of_slow_urls_ends_within_its_share_of_deadlines(
    server, tmp_path, download_settings
):
    download_settings.timeout, download_settings.deadline = 0.5, 1.0
    download_settings.workers = 4
    for index in range(8):
        server.routes[f"/{index}.jpg"] = Route(images.jpeg(index), trickle=0.1)
    started = time.monotonic()
    table = download_urls(
        [server.url(f"/{index}.jpg") for index in range(8)], tmp_path, download_settings
    )
    assert set(table["status"]) == {"timeout"}
    assert time.monotonic() - started < 2 * download_settings.deadline + 0.5  # ceil(8 / 4) = 2


def test_every_malformed_line_is_a_row(tmp_path, download_settings):
    lines = [
        "http://[::1/x.jpg",
        "http://" + "a" * 64 + ".example.org/x.jpg",
        "/x/\0.jpg",
        "file:///etc/%00passwd",
        "http:///x.jpg",
        "http://example.org:99999/x.jpg",
        "http://example.org:port/x.jpg",
    ]
    table = download_urls(lines, tmp_path, download_settings)
    assert list(table["url"]) == lines
    assert set(table["status"]) == {"invalid_url"}, table[["url", "status", "error"]]
    assert table["error"].str.len().gt(0).all()


def test_local_files_and_services_are_fetched_only_when_allowed(
    server, tmp_path, download_settings
):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:SECRET-HASH:19000:0:99999:7:::\n")
    photo = tmp_path / "private.png"
    photo.write_bytes(images.png(1))
    server.routes["/a.jpg"] = Route(images.jpeg(2))
    port = server.url("/").split(":")[-1].rstrip("/")
    urls = [
        str(secret),
        secret.as_uri(),
        str(photo),
        "~/private.png",
        server.url("/a.jpg"),
        f"http://localhost:{port}/a.jpg",
        f"http://0x7f000001:{port}/a.jpg",
        f"http://[::ffff:127.0.0.1]:{port}/a.jpg",
    ]
    download_settings.allow_local = False
    table = download_urls(urls, tmp_path / "store", download_settings)
    assert set(table["status"]) == {"blocked"}, table[["url", "status", "error"]]
    assert table["error"].str.contains("allow_local").all()
    assert server.requests["/a.jpg"] == 0
    assert list((tmp_path / "store").iterdir()) == [tmp_path / "store" / "journal.jsonl"]

    download_settings.allow_local = True
    rows = by_url(download_urls(urls, tmp_path / "allowed", download_settings))
    assert rows[str(secret)]["status"] == "not_image"
    assert rows[str(photo)]["status"] == "ok"
    assert rows[server.url("/a.jpg")]["status"] == "ok"
    assert all("SECRET" not in row["error"] for row in rows.values())


@pytest.mark.timeout(30)
def test_a_fifo_or_device_is_no_image_and_never_waited_on(tmp_path, download_settings):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    table = download_urls(
        [str(fifo), "/dev/zero", fifo.as_uri()], tmp_path / "store", download_settings
    )
    assert list(table["status"]) == ["file_error"] * 3
    assert table["error"].str.contains("not a regular file").all()


def test_a_compressed_bomb_is_too_large_as_it_decodes(server, tmp_path, download_settings):
    """200 MB of JPEG-headed zeros, gzipped to 200 KB: refused at max_bytes of decoded data."""
    body = gzip.compress(b"\xff\xd8\xff" + bytes(200_000_000), compresslevel=9)
    server.routes["/bomb.jpg"] = Route(body, headers={"Content-Encoding": "gzip"})
    table = download_urls([server.url("/bomb.jpg")], tmp_path, download_settings)
    assert table["status"].tolist() == ["too_large"]
    assert f"max_bytes={download_settings.max_bytes}" in table["error"][0]
