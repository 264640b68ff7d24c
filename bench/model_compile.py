"""Session creation from a QNN context binary vs from the QDQ model, per Hexagon arch.

Run: `.venv/bin/python bench/model_compile.py [--model tiny-sd] [--precision w8a16]
[--archs 73 75] [--repeat 3]`, or `--synthetic` for random-weight models when nothing is
trained yet. Compiles each component for each arch into a temporary folder (the store is not
changed) and prints compile time, the median session-creation time from the context and from
the QDQ model on the HTP simulator, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from hexfleet.manifest import ROLES, Manifest
from hexfleet.models.compile import SOC_FOR_ARCH, binary_target, compile_context
from hexfleet.models.quantize import quantize_model
from hexfleet.models.registration import register_tiny_sd
from hexfleet.models.runtime import HTP_ARCHS, open_session
from hexfleet.models.store import ModelStore
from hexfleet.settings import Settings

# The synthetic SD-layout model is a test fixture, shared with tests/ (tests/support).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from synthetic_sd import write_tiny_layout  # noqa: E402


def _median_create(path: Path, arch: str, repeat: int) -> float:
    return statistics.median(
        open_session(path, "htp", htp_arch=arch).create_seconds for _ in range(repeat)
    )


def _model(args: argparse.Namespace, scratch: Path) -> tuple[ModelStore, Manifest]:
    if args.synthetic:
        store = ModelStore(scratch / "store")
        fp32 = register_tiny_sd(store, write_tiny_layout(scratch / "tiny"))
        qdq = quantize_model(
            store, fp32, args.precision, calibration_prompts=2, calibration_steps=2, check_htp=False
        )
        return store, qdq.manifest
    store = ModelStore.from_settings(Settings())
    return store, store.load(args.model, None, args.precision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-sd")
    parser.add_argument("--precision", default="w8a16", choices=["w8a8", "w8a16"])
    parser.add_argument("--archs", nargs="+", default=["73", "75"], choices=HTP_ARCHS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="random-weight tiny model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hexfleet-bench-") as tmp:
        scratch = Path(tmp)
        store, manifest = _model(args, scratch)
        print(f"{manifest.ref}: session creation on the HTP simulator (median of {args.repeat})")
        header = f"{'arch':>5} {'SoC':>7} {'component':>13} {'compile s':>10} "
        print(header + f"{'from QDQ s':>11} {'from ctx s':>11} {'ratio':>7}")
        for arch in args.archs:
            totals = [0.0, 0.0]
            for role in ROLES:
                qdq = store.component_path(manifest.components[role])
                context = scratch / f"{role}.v{arch}.onnx"
                compile_s = compile_context(qdq, context, arch)
                target = binary_target(context)
                from_qdq = _median_create(qdq, arch, args.repeat)
                from_ctx = _median_create(context, arch, args.repeat)
                totals[0] += from_qdq
                totals[1] += from_ctx
                soc = target[0] if target else "?"
                print(
                    f"{'v' + arch:>5} {soc:>7} {role:>13} {compile_s:>10.3f} "
                    f"{from_qdq:>11.3f} {from_ctx:>11.4f} {from_qdq / from_ctx:>6.0f}x"
                )
            print(
                f"{'v' + arch:>5} {SOC_FOR_ARCH[arch]:>7} {'all three':>13} {'':>10} "
                f"{totals[0]:>11.3f} {totals[1]:>11.4f} {totals[0] / totals[1]:>6.0f}x"
            )


if __name__ == "__main__":
    main()
