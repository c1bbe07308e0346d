"""Where a workdir or a data path lives: a local folder or a `gs://` bucket.

Every path the project reads or writes goes through `etils.epath` (`path(p)`): the same
pathlib calls for a local folder and for `gs://bucket/prefix` (through fsspec/gcsfs,
installed by the `[gcs]` or `[tpu]` extra). A local path behaves as before.

GCS is an object store, not a file system, and three of its differences matter here:
- there are no folders, and no cheap recursive glob: `list_files` lists a whole prefix
  in one paginated request instead of one request per folder;
- an object cannot be appended to or renamed cheaply, and appears whole when its upload
  ends: writers make the file locally and upload it (`local_then_upload`);
- access can fail for reasons a local disk never has (no bucket, no credentials):
  `check_reachable` and `access_errors` say so in one line naming the path, before
  anything is written, instead of a 30-line authentication traceback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from etils import epath

from videofusion_jax.cli import ConfigError

# The object stores epath has an fsspec backend for: gs:// (what the project tests,
# through gcsfs), s3:// (s3fs), az:// and hf://. epath reads any other `scheme://` path,
# file:// included, as a local one.
REMOTE_SCHEMES = ("gs", "s3", "az", "hf")
HOW_TO_INSTALL = "pip install 'videofusion_jax[gcs]' (or [tpu])"
HOW_TO_AUTHENTICATE = (
  "run `gcloud auth application-default login`, or set "
  "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file; "
  "on a TPU VM the VM's service account needs access to the bucket"
)


def is_remote(p: str | os.PathLike) -> bool:
  """An object store (gs://, s3://, ...): shared by every host, no folders, no appends."""
  scheme, sep, _ = os.fspath(p).partition("://")
  return bool(sep) and scheme in REMOTE_SCHEMES


def path(p: str | os.PathLike) -> epath.Path:
  """`p` as an `epath.Path` (a local path stays as given, relative or not)."""
  return epath.Path(p)


def absolute(p: str | os.PathLike) -> epath.Path:
  """`p` made absolute; a `gs://` URI as it is (epath's `absolute()` and `resolve()`
  would turn it into ./gs:/bucket/...)."""
  return epath.Path(p) if is_remote(p) else epath.Path(p).absolute()


def _fs(p: epath.Path):
  """The fsspec file system of a remote path (for what epath has no call for)."""
  return epath.backend.fsspec_backend.fs(os.fspath(p))


def _bucket(p: str | os.PathLike) -> str:
  return os.fspath(p).split("://", 1)[1].split("/", 1)[0]


def list_files(root: str | os.PathLike) -> list[epath.Path]:
  """Every file under `root`, at any depth, sorted. On GCS one listing of the prefix
  (pages of 1,000 objects), not one request per folder and per file."""
  root = path(root)
  if not is_remote(root):
    return sorted(epath.Path(d) / f for d, _, files in os.walk(root) for f in files)
  found = _fs(root).find(os.fspath(root))  # without the scheme: bucket/key
  scheme = os.fspath(root).split("://", 1)[0]
  return sorted(epath.Path(f"{scheme}://{f}") for f in found if not f.endswith("/"))


def _access_line(p: str, name: str, error: BaseException) -> str | None:
  """One line for an error that means `p` cannot be reached at all, or None."""
  text = " ".join(str(error).split())
  auth = (
    "google.auth" in type(error).__module__
    or getattr(error, "code", None) in (401, 403)
    or text.startswith("Forbidden")
    or "Anonymous caller" in text
  )
  if auth:
    return (
      f"{name}={p}: no Google Cloud credentials with access to bucket {_bucket(p)} "
      f"({type(error).__name__}: {text[:200]}); {HOW_TO_AUTHENTICATE}"
    )
  if isinstance(error, ImportError):
    return f"{name}={p}: reading gs:// paths needs gcsfs; {HOW_TO_INSTALL}"
  return None


@contextlib.contextmanager
def access_errors(p: str | os.PathLike, name: str):
  """Turn "no credentials" (google.auth's errors, HTTP 401/403) and "gcsfs is not
  installed" for the remote path `p` into a one-line `ConfigError` naming `name`=`p`."""
  try:
    yield
  except Exception as e:  # re-raised unless it is an access error
    line = _access_line(os.fspath(p), name, e) if is_remote(p) else None
    if line is None:
      raise
    raise ConfigError(line) from None


def check_reachable(p: str | os.PathLike, name: str) -> None:
  """For a `gs://` path: its bucket exists and these credentials may list it; else a
  one-line `ConfigError` (`cli.BAD_INPUT`). Local paths are left to their users' own
  checks. Reads only: nothing is created."""
  if not p or not is_remote(p):
    return
  p = os.fspath(p)
  bucket = _bucket(p)
  if not bucket:
    raise ConfigError(f"{name}={p}: no bucket named; expected gs://BUCKET/PATH")
  with access_errors(p, name):
    try:
      # One object of the listing under the path: it needs only the object-list
      # permission a run needs anyway (not the bucket-metadata one), costs one request
      # however large the prefix, and GCS answers 404 for a missing bucket.
      prefix = p.split("://", 1)[1][len(bucket) + 1 :]
      _fs(epath.Path(p)).call("GET", "b/{}/o", bucket, prefix=prefix, maxResults=1, json_out=True)
    except FileNotFoundError:
      raise ConfigError(
        f"{name}={p}: bucket {bucket} does not exist (or is not visible "
        "to these credentials); create it (gcloud storage buckets create "
        f"gs://{bucket}) or fix the path"
      ) from None


def missing_folder_hint(p: str | os.PathLike) -> str:
  """What to add to "does not exist" for a remote folder: there are no empty folders."""
  return " (on GCS a folder exists once an object is under it)" if is_remote(p) else ""


@contextlib.contextmanager
def local_then_upload(target: str | os.PathLike) -> Iterator[Path]:
  """A local file to write `target` through: renamed over `target` when local (a crash
  leaves no half-written file under the final name), uploaded when remote (an object
  appears whole when its upload ends). Yields the local path; nothing is kept on error."""
  if not is_remote(target):
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.stem}.tmp{final.suffix}")
    try:
      yield tmp
      os.replace(tmp, final)
    finally:
      tmp.unlink(missing_ok=True)
    return
  folder = tempfile.mkdtemp(prefix="videofusion-upload-")
  try:
    tmp = Path(folder) / epath.Path(target).name
    yield tmp
    upload(tmp, target)
  finally:
    shutil.rmtree(folder, ignore_errors=True)


def upload(local: str | os.PathLike, target: str | os.PathLike) -> None:
  """Copy the local file `local` to `target` (any epath location), replacing it."""
  _fs(epath.Path(target)).put_file(os.fspath(local), os.fspath(target))


def upload_tree(local: str | os.PathLike, target: str | os.PathLike) -> None:
  """Copy the local folder `local` to `target`: the files of its sub-folders first, its
  own files last (a reader that looks for a top-level config file finds it only once
  everything it describes is there)."""
  nested, top = [], []
  for folder, _, files in os.walk(local):
    for name in files:
      rel = os.path.relpath(os.path.join(folder, name), local)
      (top if os.sep not in rel else nested).append(rel)
  for rel in sorted(nested) + sorted(top):
    upload(os.path.join(local, rel), epath.Path(target) / rel)


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
  """`target`'s whole content, written atomically (locally: a temporary name renamed)."""
  with local_then_upload(target) as tmp:
    tmp.write_bytes(data)


def move_tree(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """Move a folder (on GCS: copy each object, then delete it: there is no rename)."""
  if is_remote(src):
    _fs(epath.Path(src)).mv(os.fspath(src), os.fspath(dst), recursive=True)
  else:
    shutil.move(os.fspath(src), os.fspath(dst))
