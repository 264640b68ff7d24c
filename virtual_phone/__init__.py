"""The virtual Snapdragon phone: an ADB device the real adb server cannot tell from a phone.

protocol (message framing) → adbd (transport, streams) → sync / shell_service (services) →
shell + toolbox (the phone's sh and commands) → programs (runner, onnx tool) → compute (ORT on
the QNN HTP simulator or CPU); filesystem (confinement), profiles, health, processes, faults;
phone assembles one phone, fleet runs many.
"""
