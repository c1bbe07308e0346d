"""The pod case on the fake-gcs-server of conftest.py: two processes (gloo collectives
on 127.0.0.1) train through the train CLI with `--workdir=gs://...`, as every host of a
pod does. SIGTERM to one stops both at one step, saved to the bucket by both together;
the rerun resumes from it; nothing is written to a local `./gs:` folder."""

import pytest

from tests.parallel.test_distributed import stop_one_then_resume


@pytest.mark.slow  # two 2-process CLI runs, and up to a minute for the metrics upload
def test_two_processes_on_a_gcs_workdir_stop_together_and_the_rerun_resumes(gs_prefix, tmp_path):
  # No allow_local_workdir_multihost: a gs:// workdir is shared by every host.
  stop_one_then_resume(f"{gs_prefix}/run", cwd=tmp_path)
  assert not list(tmp_path.iterdir())  # nothing under ./gs:
