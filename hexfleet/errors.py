"""hexfleet's error hierarchy. Callers act on the kind; the CLI maps each to one line + exit code.

    HexfleetError
    ├── InvalidRequest      user input that cannot be accepted (exit 2, HTTP 400/422)
    │   └── Conflict        well-formed, but refused by the farm's current state: no phone
    │                       matches, a model lacks the words, a job has not ended (HTTP 409)
    ├── NotFound            a named thing does not exist (exit 3, HTTP 404)
    ├── ServiceUnavailable  a server we need (database, broker, adb, API) does not answer (exit 5)
    ├── DeviceError         something went wrong on a phone
    │   ├── DeviceLost      the phone disappeared or the connection broke (retry elsewhere)
    │   ├── DeviceFull      the phone has no room for what must be pushed to it
    │   └── RunnerFailed    the on-device runner exited non-zero (a failed run, no retry)
    ├── ArtifactMismatch    a file's sha256 is not the one it is named by
    └── ModelError          a model file or manifest is unusable
"""

from __future__ import annotations


class HexfleetError(Exception):
    """Root of every error hexfleet raises on purpose."""

    exit_code = 1


class InvalidRequest(HexfleetError):
    exit_code = 2


class Conflict(InvalidRequest):
    """A request the API's schema admits that what is stored refuses now (HTTP 409)."""


class NotFound(HexfleetError):
    exit_code = 3


class ServiceUnavailable(HexfleetError):
    exit_code = 5


class DeviceError(HexfleetError):
    exit_code = 6


class DeviceLost(DeviceError):
    pass


class DeviceFull(DeviceError):
    pass


class RunnerFailed(DeviceError):
    pass


class ArtifactMismatch(HexfleetError):
    exit_code = 7


class ModelError(HexfleetError):
    exit_code = 8
