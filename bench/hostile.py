"""The data half against a hostile web: every fault of issue 11 beside good images.

    python -m bench.hostile

Serves, from 127.0.0.1, two classes' URL lists that mix good images (plain JPEGs and PNGs, a
16-bit grey PNG, a photo with an ICC profile, a 7000 x 7000 RGBA PNG, one photo saved under
three names) with faults: a server that trickles a byte at a time, one that stalls after the
headers, a 503 with Retry-After, a redirect loop and redirects to ftp:// and file://, an HTML
page, a file over max_bytes, a truncated JPEG, a gzip bomb, a decompression-bomb PNG header,
a placeholder card served for URLs of both classes, malformed lines, a local secret file, a
FIFO and a device. Runs fetch_urls, download and verify with `snakemake --cores 2` and prints,
for that one run: URLs tried, rows written, good images kept and lost, bad content kept, the
slowest URL's seconds against the deadline, and verify's peak memory against its mem_mb.
"""

import gzip
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from bench.common import run_workflow
from imgclf.files import read_csv
from tests import images
from tests.http_server import ImageServer, Route

DOWNLOAD = {
    "timeout": 1,
    "deadline": 3,
    "retries": 2,
    "backoff": 0.1,
    "workers": 16,
    "max_bytes": 2_000_000,
    "allow_local": True,
}
VERIFY_MEM_MB = 4000  # what workflow/rules/data.smk declares for verify


def good_routes(label: str, offset: int) -> dict[str, Route]:
    routes = {f"/{label}/{i}.jpg": Route(images.jpeg(offset + i, size=(96, 72))) for i in range(30)}
    routes |= {
        f"/{label}/{i}.png": Route(
            images.png(offset + 50 + i, size=(96, 72)), content_type="image/png"
        )
        for i in range(10)
    }
    return routes


def special_good_routes() -> dict[str, Route]:
    """Good images that are hard to read right: all must be kept."""
    grey = np.tile(np.linspace(1000, 60000, 96), (72, 1)).astype(np.uint16)
    swapped = images.icc_rgb_profile(images.SRGB_BLUE, images.SRGB_GREEN, images.SRGB_RED)
    huge = np.zeros((7000, 7000, 4), np.uint8)
    huge[::7, :, 0], huge[..., 3] = 200, 255
    copy = images.jpeg(999, size=(96, 72))
    return {
        "/cat/deep.png": Route(images.high_depth(grey, "PNG"), content_type="image/png"),
        "/cat/profiled.jpg": Route(images.with_profile((200, 30, 30), swapped, "JPEG")),
        "/cat/huge.png": Route(
            images.encode(Image.fromarray(huge, "RGBA"), "PNG"), content_type="image/png"
        ),
        "/cat/copy-1.jpg": Route(copy),
        "/cat/copy-2.jpg": Route(copy),
        "/cat/copy-3.jpg": Route(copy),
    }


def fault_routes() -> dict[str, Route]:
    card = images.encode(images.card(), "PNG")
    return {
        "/cat/trickle.jpg": Route(images.jpeg(1001), trickle=0.3),
        "/cat/stall.jpg": Route(images.jpeg(1002), trickle=30),
        "/cat/busy.jpg": Route(status=503, headers={"Retry-After": "15"}),
        "/cat/loop-1": Route(status=302, headers={"Location": "/cat/loop-2"}),
        "/cat/loop-2": Route(status=302, headers={"Location": "/cat/loop-1"}),
        "/cat/to-ftp": Route(status=302, headers={"Location": "ftp://127.0.0.1/x.jpg"}),
        "/cat/to-file": Route(status=302, headers={"Location": "file:///etc/passwd"}),
        "/cat/page.jpg": Route(b"<!doctype html><p>gone</p>", content_type="text/html"),
        "/cat/large.jpg": Route(images.jpeg(1003, size=(1500, 1500), quality=100)),
        "/cat/truncated.jpg": Route(images.truncated_jpeg(1004, size=(200, 200))),
        "/cat/gzip-bomb.jpg": Route(
            gzip.compress(b"\xff\xd8\xff" + bytes(100_000_000)),
            headers={"Content-Encoding": "gzip"},
        ),
        "/cat/bomb.png": Route(images.png_header_only(20000, 20000), content_type="image/png"),
        **{
            f"/{label}/card-{i}.png": Route(card, content_type="image/png")
            for label in ("cat", "dog")
            for i in range(2)
        },
    }


def local_faults(folder: Path) -> list[str]:
    secret = folder / "secret.txt"
    secret.write_text("root:SECRET-HASH:19000:0:99999:7:::\n")
    fifo = folder / "pipe.jpg"
    os.mkfifo(fifo)
    return [
        str(secret),
        secret.as_uri(),
        str(fifo),
        "/dev/zero",
        "http://[::1/x.jpg",
        "http://" + "a" * 64 + ".example/x.jpg",
        "file:///etc/%00passwd",
    ]


def main() -> None:
    goods = good_routes("cat", 0) | good_routes("dog", 100) | special_good_routes()
    faults = fault_routes()
    with tempfile.TemporaryDirectory() as folder, ImageServer(goods | faults) as server:
        workdir = Path(folder)
        lists = {
            label: [
                server.url(path) for path in {**goods, **faults} if path.startswith(f"/{label}/")
            ]
            for label in ("cat", "dog")
        }
        lists["cat"] += local_faults(workdir)
        for label, urls in lists.items():
            (workdir / f"{label}.txt").write_text("\n".join(urls) + "\n")
        config = {
            "classes": {label: {"urls": f"{label}.txt"} for label in lists},
            "download": DOWNLOAD,
        }
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        seconds = run_workflow(workdir, 2, "results/verify/manifest.csv")
        rows = pd.concat(read_csv(workdir / f"results/download/{label}.csv") for label in lists)
        manifest = read_csv(workdir / "results/verify/manifest.csv")
        rejected_text = (workdir / "results/verify/rejected.csv").read_text()
        peak_mb = float(
            pd.read_csv(workdir / "benchmarks/verify/verify.tsv", sep="\t")["max_rss"][0]
        )

    kept_ids = set(manifest["id"])
    id_of = dict(zip(rows["url"], rows["id"], strict=True))
    good_urls = [server.url(path) for path in goods]
    good_ids = {id_of[url] for url in good_urls if id_of.get(url)}
    lost = [url for url in good_urls if id_of.get(url) not in kept_ids]
    bad_kept = [url for url in rows["url"] if url not in good_urls and id_of.get(url) in kept_ids]
    slowest = rows.assign(seconds=rows["seconds"].astype(float)).nlargest(1, "seconds").iloc[0]
    tried = sum(len(urls) for urls in lists.values())
    print(f"URLs tried: {tried}; rows written: {len(rows)} ({len(rows) / tried:.0%} of them)")
    print(
        f"good images kept: {len(good_ids & kept_ids)} of {len(good_ids)} distinct "
        f"({len(good_urls)} URLs, three of them one photo); lost: {len(lost)} {lost}"
    )
    print(f"bad content kept: {len(bad_kept)} {bad_kept}")
    print(
        f"slowest URL: {slowest['seconds']:.2f} s ({slowest['status']}, {slowest['url']}) "
        f"against a deadline of {DOWNLOAD['deadline']} s: "
        f"{slowest['seconds'] / DOWNLOAD['deadline']:.2f}x"
    )
    print(
        f"verify peak memory: {peak_mb:.0f} MB against its mem_mb {VERIFY_MEM_MB} "
        f"({peak_mb / VERIFY_MEM_MB:.2f}x)"
    )
    print(f"local secret in rejected.csv: {'SECRET' in rejected_text}")
    print("statuses:", rows["status"].value_counts().to_dict())
    print(f"whole run: {seconds:.0f} s")


if __name__ == "__main__":
    main()
