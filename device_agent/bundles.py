"""The runner on a phone: the bundle for its ABI, installed once, and the command that runs it.

A bundle's files are pushed (verified by sha256 on the phone, and only if /data has room for them,
as model files are) straight into
`/data/local/tmp/hexfleet/runners/<bundle sha256>/<file name>`, the runner with mode 0755; the
folder's listing is trusted for the worker's lifetime once it matched the bundle, and listed
again after a failed run (`recheck`). Other bundles' folders are removed when a new one is
installed: a phone has one ABI, and a worker runs one bundle at a time.

The runner starts from one fixed template whose only variables are the bundle's sha256 and the
run's UUID (validated, quoted anyway): nothing a user typed reaches the command line.
"""

from __future__ import annotations

import shlex
import time

from hexfleet.bundle import RUNNER_FILE, RunnerBundle
from hexfleet.device_agent.host_cache import HostCache
from hexfleet.device_agent.phone import Phone, job_dir, runner_dir
from hexfleet.device_agent.push import RESERVE_BYTES, PushReport, no_room, push_verified
from hexfleet.errors import InvalidRequest
from hexfleet.runner_spec import RUNNERS_DIR, QnnLibraries

# Where Qualcomm's DSP loader looks for the HTP skel libraries: the bundle's folder first, then
# the phone's own (as Qualcomm's documentation sets ADSP_LIBRARY_PATH for an on-device run).
ADSP_SYSTEM_DIRS = ("/system/lib/rfsa/adsp", "/system/vendor/lib/rfsa/adsp", "/dsp")
SPEC_FILE = "spec.json"


def pick_bundle(bundles: dict[str, RunnerBundle], abi: str) -> RunnerBundle:
    """The bundle for a phone of `abi`; InvalidRequest naming the ABI when none is registered."""
    bundle = bundles.get(abi)
    if bundle is None:
        have = ", ".join(sorted(bundles)) or "none"
        raise InvalidRequest(
            f"no runner bundle for this phone's ABI {abi or '(unknown)'} (registered: {have}); "
            f"register one with `hexfleet runners register --abi {abi or 'ABI'} FOLDER`"
        )
    return bundle


def runner_command(bundle: RunnerBundle, run_id: str) -> str:
    """The runner's command line: `cd JOB && LD_LIBRARY_PATH=DIR ADSP_LIBRARY_PATH="DIR;..."
    DIR/hexfleet-runner JOB/spec.json`, DIR the bundle's folder, JOB the run's.
    The spec's path is absolute so the runner's process is found by it (`Phone.runner_pids`).
    """
    folder, job = runner_dir(bundle.sha256), job_dir(run_id)
    adsp = ";".join((folder, *ADSP_SYSTEM_DIRS))
    return (
        f"cd {shlex.quote(job)} && LD_LIBRARY_PATH={shlex.quote(folder)} "
        f"ADSP_LIBRARY_PATH={shlex.quote(adsp)} "
        f"{shlex.quote(f'{folder}/{RUNNER_FILE}')} {shlex.quote(f'{job}/{SPEC_FILE}')}"
    )


def qnn_libraries(bundle: RunnerBundle) -> QnnLibraries | None:
    """The spec's `qnn`: device paths of the bundle's QNN EP plugin and HTP backend, if it has
    them (none: the EP built into onnxruntime, the backend found by the loader)."""
    if bundle.qnn_ep is None and bundle.qnn_backend is None:
        return None
    folder = runner_dir(bundle.sha256)
    return QnnLibraries(
        ep_library=f"{folder}/{bundle.qnn_ep}" if bundle.qnn_ep else None,
        backend_path=f"{folder}/{bundle.qnn_backend}" if bundle.qnn_backend else None,
    )


class RunnerInstaller:
    """Keeps one phone's runner bundle installed."""

    def __init__(
        self, phone: Phone, host_cache: HostCache, reserve_bytes: int = RESERVE_BYTES
    ) -> None:
        self.phone = phone
        self.host_cache = host_cache
        self.reserve_bytes = reserve_bytes  # left free on /data, as the model pusher does
        self._installed: set[str] = set()  # bundles whose folder matched, as this worker saw it

    def ensure(self, bundle: RunnerBundle) -> PushReport:
        """Make the bundle's folder hold every file of it, verified; push only what is missing."""
        started = time.perf_counter()
        report = PushReport(listed=bundle.sha256 not in self._installed)
        if not report.listed:
            report.cached_files = len(bundle.files)
            report.seconds = time.perf_counter() - started
            return report
        folder = runner_dir(bundle.sha256)
        present = self.phone.listing(folder)
        missing = [ref for ref in bundle.files if present.get(ref.name, (-1, 0))[0] != ref.size]
        report.cached_files = len(bundle.files) - len(missing)
        if missing:
            self._remove_others(bundle)
            incoming = sum(ref.size for ref in missing)
            free = self.phone.free_bytes()
            if free is not None and free - incoming < self.reserve_bytes:
                raise no_room(self.phone, incoming, free, self.reserve_bytes, 0)
            mark = time.perf_counter()
            for ref in missing:
                mode = 0o755 if ref.name == RUNNER_FILE else 0o644
                target = f"{folder}/{ref.name}"
                push_verified(self.phone, self.host_cache, ref, target, report, mode)
                report.pushed_files += 1
                report.pushed_bytes += ref.size
            report.push_seconds = time.perf_counter() - mark
        self._installed.add(bundle.sha256)
        report.seconds = time.perf_counter() - started
        return report

    def recheck(self, bundle: RunnerBundle) -> PushReport:
        """After a failed run: list the folder again and push what is missing."""
        self._installed.discard(bundle.sha256)
        return self.ensure(bundle)

    def forget(self, bundle: RunnerBundle) -> None:
        """Remove the bundle's folder (found corrupt): the next `ensure` pushes it whole."""
        self._installed.discard(bundle.sha256)
        self.phone.remove(runner_dir(bundle.sha256))

    def _remove_others(self, bundle: RunnerBundle) -> None:
        others = [
            f"{RUNNERS_DIR}/{name}"
            for name in self.phone.subfolders(RUNNERS_DIR)
            if name != bundle.sha256
        ]
        if others:
            self.phone.remove(*others)
