"""hexfleet's shared vocabulary: settings and the error hierarchy.

Every other package (models, device_agent, orchestrator) may import from here; this package
imports none of them.
"""

__version__ = "0.1.0"
