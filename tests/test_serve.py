"""The served model: a real server process on 127.0.0.1 with the tiny pipeline's export."""

import hashlib
import json
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from imgclf.predict import Predictor

from . import images
from .browser import launch, playwright_api
from .tiny_pipeline import CLASSES

pytest.importorskip("starlette", reason="pip install -e '.[serve]' (or '.[dev]')")


class Server:
    """`python -m imgclf.serve` as a user starts it, on a free port."""

    def __init__(self, export: Path, *options: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imgclf.serve", str(export), "--port", "0", *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if not line.startswith("Serving"):
            self.process.kill()
            raise AssertionError(line + self.process.stderr.read())
        self.url = line.split(" on ")[1].split()[0].rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1])

    def post(self, path: str, body: bytes, **kwargs) -> requests.Response:
        return requests.post(self.url + path, data=body, timeout=30, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)

    def raw(self) -> socket.socket:
        """A connection to speak HTTP by hand: bodies that stall or lie about their length."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def stop(self) -> int:
        """SIGTERM it; uvicorn stops gracefully, then ends by the signal as a killed process
        would, so that whoever sent it sees it obeyed."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@pytest.fixture
def export(trained):
    return trained / "results/export"


@pytest.fixture
def serve(export):
    started = []

    def start(*options: str) -> Server:
        started.append(Server(export, *options))
        return started[-1]

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait()


def photos(trained) -> list[Path]:
    return [trained / f"photos/{name}/{index}.png" for name in CLASSES for index in (0, 5)]


def test_predict_answers_as_the_predict_command_does(trained, export, serve):
    server = serve()
    offline = Predictor(export)
    version = hashlib.sha256((export / "model.onnx").read_bytes()).hexdigest()[:12]
    for path in photos(trained):
        answer = server.post("/predict", path.read_bytes())
        assert answer.status_code == 200, answer.text
        served = answer.json()
        expected = offline.predict(path)
        assert served["label"] == expected.label and served["index"] == expected.index
        assert served["probability"] == pytest.approx(expected.probabilities[expected.label])
        for name in CLASSES:
            assert served["probabilities"][name] == pytest.approx(
                expected.probabilities[name], abs=1e-6
            )
        assert served["model"] == {"name": "imgclf", "version": version}
    assert server.stop() == -signal.SIGTERM


def test_the_open_inference_protocol_subset(trained, export, serve):
    server = serve("--name", "colours")
    assert server.get("/v2").json()["name"] == "imgclf"
    assert server.get("/v2/health/live").status_code == 200
    assert server.get("/v2/health/ready").json() == {"ready": True}
    assert server.get("/v2/models/colours/ready").json() == {"name": "colours", "ready": True}
    meta = server.get("/v2/models/colours").json()
    assert meta["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 3, 32, 32]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    assert server.get("/v2/models/other").status_code == 404

    offline = Predictor(export)
    pixels = np.stack([offline.file_pixels(path) for path in photos(trained)[:2]])
    request = {
        "id": "r1",
        "inputs": [
            {
                "name": "images",
                "shape": [2, 3, 32, 32],
                "datatype": "UINT8",
                "data": pixels.ravel().tolist(),
            }
        ],
    }
    answer = server.post("/v2/models/colours/infer", json.dumps(request).encode())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_name"] == "colours" and body["id"] == "r1"
    [output] = body["outputs"]
    assert output["name"] == "probabilities" and output["shape"] == [2, 3]
    served = np.array(output["data"]).reshape(2, 3)
    np.testing.assert_allclose(served, offline.probabilities(list(pixels)), atol=1e-6)

    request["inputs"][0]["shape"] = [2, 3, 24, 24]
    answer = server.post("/v2/models/colours/infer", json.dumps(request).encode())
    assert answer.status_code == 400 and "shape is [n, 3, 32, 32]" in answer.json()["error"]
    assert server.post("/v2/models/colours/infer", b"{not json").status_code == 400


def test_every_limit_answers_with_its_status_and_never_echoes_the_upload(trained, serve):
    server = serve("--max-bytes", "100000", "--body-seconds", "1")
    marker = b"SECRET-MARKER-0123"
    refused = {
        "text": server.post("/predict", marker + b" is no image"),
        "truncated": server.post("/predict", images.png(3, (64, 48))[:300] + marker),
        "bomb": server.post("/predict", images.png_header_only(12000, 12000) + marker),
        "declared": server.post("/predict", bytes(100_001)),
        "chunked": server.post("/predict", iter([marker + bytes(60_000)] * 2)),
        "host": server.post("/predict", b"x", headers={"Host": "evil.example:80"}),
        "origin": server.post("/predict", b"x", headers={"Origin": "http://evil.example"}),
    }
    statuses = {case: answer.status_code for case, answer in refused.items()}
    assert statuses == {
        "text": 415,
        "truncated": 415,
        "bomb": 422,
        "declared": 413,
        "chunked": 413,
        "host": 421,
        "origin": 403,
    }
    assert "12000x12000 is over the max_pixels of 50000000" in refused["bomb"].json()["error"]
    for case, answer in refused.items():
        assert marker.decode() not in answer.text, case
        assert answer.headers["X-Frame-Options"] == "DENY", case

    stalled = server.raw()  # announces 1,000 bytes, sends 10, then nothing
    stalled.sendall(
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Content-Length: 1000\r\n\r\n".encode()
        + bytes(10)
    )
    started = time.monotonic()
    answer = stalled.recv(1000).decode()
    assert answer.startswith("HTTP/1.1 408"), answer
    assert time.monotonic() - started < 5
    # The server is whole after all of that.
    assert server.post("/predict", photos(trained)[0].read_bytes()).status_code == 200


def test_a_full_queue_answers_503_with_retry_after(trained, serve):
    server = serve("--queue", "1", "--body-seconds", "10")
    holder = server.raw()  # admitted, then slow to send its body: the queue's one place
    holder.sendall(
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Content-Length: 1000\r\n\r\n".encode()
    )
    time.sleep(0.5)
    busy = server.post("/predict", photos(trained)[0].read_bytes())
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    holder.close()
    time.sleep(0.5)
    assert server.post("/predict", photos(trained)[0].read_bytes()).status_code == 200


def test_a_token_guards_all_but_the_page_and_the_probes(trained, serve, tmp_path):
    token = "t0k3n-" + "x" * 20
    (tmp_path / "token").write_text(token + "\n")
    server = serve("--token-file", str(tmp_path / "token"))
    photo = photos(trained)[0].read_bytes()
    assert server.post("/predict", photo).status_code == 401
    wrong = server.post("/predict", photo, headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert server.get("/metrics").status_code == 401
    right = {"Authorization": f"Bearer {token}"}
    assert server.post("/predict", photo, headers=right).status_code == 200
    assert server.get("/").status_code == 200
    assert server.get("/v2/health/ready").status_code == 200


def test_another_address_needs_a_token_or_no_auth(export):
    result = subprocess.run(
        [sys.executable, "-m", "imgclf.serve", str(export), "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--host 0.0.0.0 lets other machines in: give --token-file" in result.stderr


def test_requests_that_arrive_together_run_as_one_batch_and_metrics_say_so(trained, serve):
    server = serve("--max-wait-ms", "200", "--max-batch", "8")
    body = photos(trained)[0].read_bytes()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: server.post("/predict", body), range(8)))
    assert [answer.status_code for answer in answers] == [200] * 8
    assert len({answer.json()["probability"] for answer in answers}) == 1
    metrics = server.get("/metrics").text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['imgclf_requests_total{path="/predict",status="200"}'] == 8
    assert samples["imgclf_batch_size_sum"] == 8
    assert samples["imgclf_batch_size_count"] < 8  # some ran together
    assert samples["imgclf_queue_wait_seconds_count"] == 8


def test_sigterm_lets_the_request_in_flight_finish(trained, serve):
    server = serve()
    body = photos(trained)[0].read_bytes()
    client = server.raw()
    client.sendall(
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body[:100]
    )
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    client.sendall(body[100:])
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["label"] in CLASSES
    assert server.process.wait(timeout=30) == -signal.SIGTERM


def test_the_page_classifies_a_chosen_and_a_dropped_photo_and_names_a_bad_file(
    trained, serve, tmp_path
):
    sync_api = playwright_api()
    server = serve()
    photo = photos(trained)[0]
    expected = Predictor(trained / "results/export").predict(photo)
    (tmp_path / "notes.txt").write_text("not an image")
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's
        problems = []
        page.on("console", lambda message: message.type == "error" and problems.append(message))
        page.on("pageerror", lambda failure: problems.append(failure))
        page.goto(server.url + "/")
        expect = sync_api.expect
        expect(page.locator("#knows")).to_contain_text("knows 3 classes only: red, green, blue")

        page.set_input_files("#file", str(photo))
        expect(page.locator("#label")).to_contain_text(expected.label)
        expect(page.locator(".bar")).to_have_count(3)
        expect(page.locator(".bar.best .name")).to_have_text(expected.label)
        page.wait_for_function("document.getElementById('preview').naturalWidth > 0")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll

        page.set_input_files("#file", str(tmp_path / "notes.txt"))
        expect(page.locator("#error")).to_contain_text("not an image")
        expect(page.locator("#result")).to_be_hidden()

        page.evaluate(DROP, list(photo.read_bytes()))
        expect(page.locator("#label")).to_contain_text(expected.label)
        expect(page.locator("#error")).to_have_text("")
        browser.close()
    assert not [problem for problem in problems if "415" not in str(problem)], problems


# A drop as the browser makes one when a file is dragged onto the page.
DROP = """(bytes) => {
  const file = new File([new Uint8Array(bytes)], "photo.png", { type: "image/png" });
  const data = new DataTransfer();
  data.items.add(file);
  document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: data }));
}"""
