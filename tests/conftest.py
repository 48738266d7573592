import os
import shutil
import subprocess
from pathlib import Path

import pytest

from imgclf.download import DownloadSettings
from imgclf.verify import VerifySettings

from . import slurm_runs as slurm
from .http_server import ImageServer
from .tiny_pipeline import ONE_THREAD_A_JOB, tiny_config, write_photos
from .workflow import snakemake, write_config


@pytest.fixture(scope="session", autouse=True)
def slurm_runs(request, tmp_path_factory):
    """The cluster tests' runs, begun before the first test when any cluster test is
    selected, so that they wait on Slurm while the other tests run (tests/slurm_runs.py)."""
    if not any(item.path.name == "test_slurm.py" for item in request.session.items):
        yield None
        return
    with slurm.started(tmp_path_factory) as runs:
        yield runs


@pytest.fixture
def server():
    with ImageServer() as running:
        yield running


@pytest.fixture
def download_settings():
    return DownloadSettings(
        max_images=100,
        max_bytes=100_000,
        timeout=1.0,
        deadline=3.0,
        retries=2,
        backoff=0.01,
        workers=4,
        allow_local=True,  # the test server is on 127.0.0.1
    )


@pytest.fixture
def verify_settings():
    return VerifySettings(max_size=40, min_size=16, max_pixels=1_000_000, placeholder_urls=3)


@pytest.fixture
def tmpfs():
    """mount(folder, size): a real filesystem of `size` (as mount's size=, such as 256k) at
    `folder`, for the writes that fill it; mount it again to resize it. Unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs takes root (CI runs as root)")
    mounted = []

    def mount(folder: Path, size: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        options = f"remount,size={size}" if folder in mounted else f"size={size}"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
        mounted.append(folder)
        return folder

    yield mount
    for folder in dict.fromkeys(reversed(mounted)):
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def fingerprint(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file's size and modification time; Snakemake's own records aside."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file() and ".snakemake" not in path.relative_to(folder).parts
    }


@pytest.fixture(scope="session")
def trained_once(tmp_path_factory):
    """The tiny pipeline run locally, once for the session."""
    workdir = tmp_path_factory.mktemp("trained")
    write_photos(workdir)
    write_config(workdir, tiny_config())
    snakemake(workdir, *ONE_THREAD_A_JOB)
    return workdir, fingerprint(workdir)


@pytest.fixture
def trained(trained_once):
    """The tiny pipeline's workdir, shared by the session and read-only: a test that changes a
    file in it fails, so no test depends on another's leftovers. Take `trained_copy` to change."""
    workdir, before = trained_once
    yield workdir
    assert fingerprint(workdir) == before, "this test changed the shared trained workdir"


@pytest.fixture
def trained_copy(trained_once, tmp_path):
    """A copy of the trained workdir (modification times kept, so Snakemake sees it finished)
    for a test that changes its config or labels."""
    copy = tmp_path / "trained"
    shutil.copytree(trained_once[0], copy, symlinks=True)
    return copy
