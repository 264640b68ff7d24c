"""What may reach a phone's shell: only validated identifiers, and only paths inside hexfleet's own
folder. Names with `../`, slashes or shell syntax are refused before anything is sent.
"""

from __future__ import annotations

import posixpath
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hexfleet.device_agent.phone import Phone as AgentPhone
from hexfleet.device_agent.phone import cache_path, check_run_id, check_sha256, job_dir
from hexfleet.errors import InvalidRequest
from hexfleet.runner_spec import CACHE_DIR, DEVICE_ROOT_DIR, JOBS_DIR
from hexfleet.virtual_phone.phone import VirtualPhone

SHA = "ab" * 32
RUN = "0b5c4f2e-8d51-4c0e-9a43-1f6f3b1f2d7e"
HOSTILE_NAMES = [
    "../" + SHA[3:],
    "../../etc/passwd",
    SHA[:-3] + "/..",
    f"{SHA}/../../x",
    f"{RUN}/../..",
    "..",
    "",
    f"{SHA}; rm -rf /",
    f"$(reboot){RUN[9:]}",
    SHA.upper(),
    RUN + "\n",
    SHA + "\n",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_refused_as_identifiers(name: str) -> None:
    for check in (check_sha256, check_run_id, cache_path, job_dir):
        with pytest.raises(InvalidRequest):
            check(name)


@given(st.text(alphabet="0123456789abcdef-./;$ \n", max_size=80))
def test_whatever_is_accepted_is_a_plain_name_inside_the_folder(name: str) -> None:
    for build, folder in ((cache_path, CACHE_DIR), (job_dir, JOBS_DIR)):
        try:
            path = build(name)
        except InvalidRequest:
            continue
        assert posixpath.dirname(path) == folder
        assert posixpath.normpath(path) == path
        assert not set(name) & set("./;$ \n")


def test_valid_identifiers_make_paths_in_the_folder() -> None:
    assert cache_path(SHA) == f"{CACHE_DIR}/{SHA}"
    run_id = str(uuid.uuid4())
    assert job_dir(run_id) == f"{JOBS_DIR}/{run_id}"


OUTSIDE = [
    "/data/local/tmp",
    DEVICE_ROOT_DIR,
    f"{DEVICE_ROOT_DIR}/",
    f"{DEVICE_ROOT_DIR}/../keep.txt",
    f"{DEVICE_ROOT_DIR}/jobs/../../keep.txt",
    f"{DEVICE_ROOT_DIR}/./jobs/..",
    f"{DEVICE_ROOT_DIR}//jobs",
    "/data/local/tmp/hexfleet-other",
    "relative/path",
]


def test_remove_refuses_paths_outside_hexfleets_folder(
    agent_phone: AgentPhone, phone: VirtualPhone
) -> None:
    keep = phone.fs.root / "data/local/tmp/keep.txt"
    keep.write_text("mine")
    job = phone.fs.root / JOBS_DIR.lstrip("/") / RUN
    job.mkdir(parents=True)
    for path in OUTSIDE:
        with pytest.raises(InvalidRequest, match="refusing"):
            agent_phone.remove(f"{JOBS_DIR}/{RUN}", path)
    assert keep.read_text() == "mine"
    assert job.is_dir(), "nothing is removed when one of the paths is refused"
    agent_phone.remove(f"{JOBS_DIR}/{RUN}")
    assert not job.exists()
