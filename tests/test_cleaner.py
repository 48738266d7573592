"""The label cleaner: its server, and its page in a real headless Chromium."""

import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

import pytest
import requests

from imgclf.files import read_csv

from .browser import launch, playwright_api
from .tiny_pipeline import AFTER_LABELS, CLASSES, RESULTS, TRAINING
from .workflow import planned_rules


@pytest.fixture
def workdir(trained_copy):
    return trained_copy


@pytest.fixture
def cleaner(workdir):
    """`python -m imgclf.cleaner` as a user starts it, on a free port; its URL."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "imgclf.cleaner", "--directory", str(workdir)),
            *("--port", "0", "--body-seconds", "1"),  # 1 s to send a body; 10 for real
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    if "Label cleaner on" not in line:
        process.kill()
        raise AssertionError(line + process.stderr.read())
    yield line.split(" on ")[1].split()[0].rstrip("/")
    process.terminate()
    process.wait()


def test_relabel_drop_and_accept_with_the_keyboard_are_saved_and_rerun_only_split_onwards(
    cleaner, workdir
):
    sync_api = playwright_api()
    review = read_csv(workdir / "results/interpret/review.csv")
    first, second, third = review.iloc[0], review.iloc[1], review.iloc[2]
    new_label = next(label for label in CLASSES if label != first["label"])
    suggested = next(label for label in CLASSES if label != third["label"])
    review.loc[2, ["issue", "suggested"]] = ["label", suggested]  # as the audit writes one
    review.to_csv(workdir / "results/interpret/review.csv", index=False)
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        page.goto(cleaner)
        expect = sync_api.expect
        expect(page.locator("#image-id")).to_have_text(first["id"])  # the queue's first
        page.wait_for_function("document.getElementById('photo').naturalWidth > 0")
        page.keyboard.press(str(CLASSES.index(new_label) + 1))
        expect(page.locator("#image-id")).to_have_text(second["id"])  # on to the next
        page.keyboard.press("d")
        expect(page.locator("#status")).to_contain_text(f"{second['id']}: drop (saved)")
        expect(page.locator("#issue")).to_have_text("label doubted by the audit")
        expect(page.locator("#suggested")).to_have_text(suggested)
        page.keyboard.press("a")  # accept the suggestion
        expect(page.locator("#status")).to_contain_text(
            f"{third['id']}: relabel to {suggested} (saved)"
        )
        page.reload()
        expect(page.locator("#image-id")).to_have_text(first["id"])
        expect(page.locator("#decision")).to_have_text(f"relabel to {new_label}")
        page.keyboard.press("ArrowRight")
        expect(page.locator("#decision")).to_have_text("drop")
        expect(page.locator("#rerun")).to_contain_text("snakemake --cores 4")
        browser.close()
    labels = read_csv(workdir / "labels.csv")
    assert dict(zip(labels["id"], labels["label"], strict=True)) == {
        first["id"]: new_label,
        second["id"]: "drop",
        third["id"]: suggested,
    }
    assert planned_rules(workdir) == AFTER_LABELS | TRAINING | RESULTS


def test_a_grid_page_is_decided_with_the_keyboard_and_a_click(cleaner, workdir):
    sync_api = playwright_api()
    queue = list(read_csv(workdir / "results/interpret/review.csv")["id"])
    manifest = read_csv(workdir / "results/verify/manifest.csv").set_index("id")
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems = []
        page.on("console", lambda message: message.type == "error" and problems.append(message))
        page.goto(cleaner)
        expect = sync_api.expect
        expect(page.locator("#image-id")).to_have_text(queue[0])
        page.keyboard.press("g")
        tiles = page.locator("#grid .tile")
        expect(tiles).to_have_count(min(24, len(manifest)))
        expect(tiles.nth(0)).to_have_class("tile focused")
        assert tiles.nth(0).get_attribute("data-id") == queue[0]
        page.keyboard.press("d")  # drop the first; the focus moves on
        expect(tiles.nth(1)).to_have_class("tile focused")
        page.keyboard.press("2")  # relabel the second to the second class
        columns = page.evaluate(
            "getComputedStyle(document.getElementById('grid'))"
            ".gridTemplateColumns.split(' ').length"
        )
        page.keyboard.press("ArrowDown")  # a row down from the third
        expect(tiles.nth(2 + columns)).to_have_class("tile focused")
        own = manifest.at[queue[2 + columns], "label"]
        other = next(index for index, name in enumerate(CLASSES) if name != own)
        page.keyboard.press(str(other + 1))
        expect(tiles.nth(2 + columns).locator(".verdict")).to_have_text(
            f"relabel to {CLASSES[other]}"
        )
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("k")  # changed my mind: back to its own label
        tiles.nth(5).click()
        expect(tiles.nth(5)).to_have_class("tile focused")
        page.get_by_role("button", name="drop").click()
        expect(tiles.nth(0).locator(".verdict")).to_have_text("drop")
        expect(tiles.nth(5).locator(".verdict")).to_have_text("drop")
        browser.close()
    assert not problems, problems
    labels = dict(read_csv(workdir / "labels.csv").values.tolist())
    kept = queue[2 + columns]
    assert labels == {queue[0]: "drop", queue[1]: CLASSES[1], kept: own, queue[5]: "drop"}


def test_only_images_of_the_manifest_are_served(cleaner, workdir):
    manifest = read_csv(workdir / "results/verify/manifest.csv")
    image = requests.get(f"{cleaner}/image/{manifest['id'][0]}", timeout=5)
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    assert image.content == (workdir / manifest["path"][0]).read_bytes()
    for path in [
        "/image/ffffffffffffffff",
        "/image/../config.yaml",
        "/config.yaml",
        "/results/verify/manifest.csv",
        "/image/" + manifest["path"][0],
        "/..%2fconfig.yaml",
    ]:
        refused = requests.get(cleaner + path, timeout=5)
        assert refused.status_code == 404, path
    assert requests.put(f"{cleaner}/api/decision", timeout=5).status_code == 405


def post(url: str, body, **headers) -> requests.Response:
    return requests.post(f"{url}/api/decision", json=body, headers=headers, timeout=5)


def test_bad_decisions_are_refused_and_the_labels_file_untouched(cleaner, workdir):
    image_id = read_csv(workdir / "results/verify/manifest.csv")["id"][0]
    refusals = [
        (post(cleaner, {"id": image_id, "decision": "purple"}), 400, "a decision is a class"),
        (post(cleaner, {"id": "ffffffffffffffff", "decision": "red"}), 400, "not an image"),
        (post(cleaner, {"id": image_id, "decision": "red", "path": "/etc"}), 400, "send {"),
        (post(cleaner, [image_id, "red"]), 400, "send {"),
        (
            post(cleaner, {"id": image_id, "decision": "red"}, Origin="http://evil.example"),
            403,
            "this page only",
        ),
        (requests.post(f"{cleaner}/api/decision", data="id=1", timeout=5), 415, "send JSON"),
        (
            requests.post(f"{cleaner}/api/decision", json={"x": "y" * 5000}, timeout=5),
            413,
            "too large",
        ),
    ]
    for response, status, message in refusals:
        assert response.status_code == status and message in response.json()["error"]
    assert not (workdir / "labels.csv").exists()


def test_keep_undoes_a_relabel(cleaner, workdir):
    manifest = read_csv(workdir / "results/verify/manifest.csv")
    image_id, original = manifest["id"][0], manifest["label"][0]
    other = next(label for label in CLASSES if label != original)
    assert post(cleaner, {"id": image_id, "decision": other}).json()["label"] == other
    assert post(cleaner, {"id": image_id, "decision": "keep"}).json()["label"] == original
    assert read_csv(workdir / "labels.csv").values.tolist() == [[image_id, original]]
    state = requests.get(f"{cleaner}/api/images", timeout=5).json()
    assert [image["decision"] for image in state["images"] if image["id"] == image_id] == [original]


def test_only_requests_for_this_server_by_name_are_answered(cleaner, workdir):
    """DNS rebinding: evil.example resolved to 127.0.0.1 sends its own Host and Origin."""
    image_id = read_csv(workdir / "results/verify/manifest.csv")["id"][0]
    port = urlparse(cleaner).port
    evil = {"Host": "evil.example", "Origin": "http://evil.example"}
    for path in ("/", "/api/images", f"/image/{image_id}"):
        assert requests.get(cleaner + path, headers=evil, timeout=5).status_code == 421, path
    assert post(cleaner, {"id": image_id, "decision": "drop"}, **evil).status_code == 421
    assert not (workdir / "labels.csv").exists()

    page = requests.get(f"http://localhost:{port}/", timeout=5)
    assert page.status_code == 200
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        assert post(cleaner, {"id": image_id, "decision": "keep"}, Origin=origin).ok, origin
    mismatched = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port + 1}"}
    assert post(cleaner, {"id": image_id, "decision": "drop"}, **mismatched).status_code == 403


def raw_request(url: str, head: str, body: bytes = b"") -> tuple[int, float]:
    """Send bytes as they are; the status code and the seconds the answer took."""
    parsed = urlparse(url)
    started = time.monotonic()
    with socket.create_connection((parsed.hostname, parsed.port), timeout=5) as connection:
        request = head.replace("HOST", parsed.netloc).replace("\n", "\r\n") + "\r\n"
        connection.sendall(request.encode() + body)
        answer = connection.recv(1024).decode()
    return int(answer.split()[1]), time.monotonic() - started


def test_malformed_requests_get_a_4xx_and_never_hang(cleaner, workdir):
    post_head = "POST /api/decision HTTP/1.1\nHost: HOST\nContent-Type: application/json\n"
    deep = b"[" * 2000 + b"]" * 2000
    cases = [
        (post_head + "Content-Length: abc\n", b"{}", 400),  # uvicorn refuses it unread
        (post_head + "Content-Length: -1\n", b"{}", 400),
        (post_head + "Content-Length: 100\n", b'{"id": "', 408),  # and then nothing
        (post_head + f"Content-Length: {len(deep)}\n", deep, 400),
        ("GET / HTTP/1.0\n", b"", 421),  # no Host at all (HTTP/1.1 requires one: 400)
    ]
    for head, body, status in cases:
        answered, seconds = raw_request(cleaner, head, body)
        assert (answered, seconds < 3) == (status, True), head
    assert not (workdir / "labels.csv").exists()
