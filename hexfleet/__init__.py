"""hexfleet: the shared core (settings, errors, broker names, the wire vocabulary) and the one
import name under which every program installs (hexfleet.models, hexfleet.orchestrator, ...).

The modules in this folder import nothing of the programs; every program may import them
(docs/architecture.md).
"""

__version__ = "0.1.0"
