import pytest

from imgclf.download import Settings as DownloadSettings
from imgclf.verify import Settings as VerifySettings

from .http_server import ImageServer
from .tiny_pipeline import tiny_config, write_photos
from .workflow import snakemake, write_config


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


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """The tiny pipeline run locally, once for the session; tests that change it restore it."""
    workdir = tmp_path_factory.mktemp("trained")
    write_photos(workdir)
    write_config(workdir, tiny_config())
    snakemake(workdir, "--cores", "2")
    return workdir
