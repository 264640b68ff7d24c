"""Cross-device validation: the same inputs on every selected phone, compared with a reference.

A validation job (kind `validate`) fans out `generate` runs (fixed prompts, fixed seed) or `infer`
runs (held-out activations of one component) to every selected phone (`submission`). When its
last run ends, the ingest worker compares each phone with the reference (`reference`: FP32 on
this host's CPU EP, or a named golden phone) and with every other phone (`scoring`, `agreement`),
and stores the verdicts once (`report`, `storage`); reading a report only reads (`report`), and
`rendering` draws it as HTML or terminal tables.
"""

from hexfleet.orchestrator.validation.report import ValidationReport, load_report
from hexfleet.orchestrator.validation.submission import ValidationRequest, submit_validation

# The names callers outside the package use most; everything else by its module.
__all__ = ["ValidationReport", "ValidationRequest", "load_report", "submit_validation"]
