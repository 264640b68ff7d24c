"""onnxruntime's own calibrators over feeds a test recorded (quantize itself collects ranges with
models/calibration.py::collect_ranges): the tests that compare with onnxruntime, or quantize a
small graph with its calibrators, read the feeds through this."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from onnxruntime.quantization import CalibrationDataReader


class FeedsReader(CalibrationDataReader):
    """onnxruntime's calibration reader over recorded feeds: rewindable, and windowed
    (`set_range`)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = feeds
        self._iter: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(self._feeds[start_index:end_index])

    def __len__(self) -> int:
        return len(self._feeds)
