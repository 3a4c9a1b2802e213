"""Fixtures for the checkpoint-following tests: the S3-protocol test server."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server in a subprocess on a free port (what s3fs itself tests against)."""
    server = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    command = [server] if server else [sys.executable, "-m", "moto.server"]
    port = _free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    process = subprocess.Popen(
        [*command, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    limit = time.monotonic() + 60.0  # a loaded machine can be slow to start it
    try:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > limit:
                    raise RuntimeError(f"moto server did not start on port {port}") from None
                time.sleep(0.05)  # a bounded wait for an external process to listen
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_buckets = itertools.count()


@pytest.fixture
def s3(s3_endpoint: str) -> tuple[Any, dict[str, Any], str]:
    """A fresh bucket: (a writer's filesystem, the storage options, the bucket URL)."""
    s3fs = pytest.importorskip("s3fs")
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": s3_endpoint},
    }
    writer = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **options)
    bucket = f"ckpt-{next(_buckets)}"
    writer.mkdir(bucket)
    return writer, options, f"s3://{bucket}"
