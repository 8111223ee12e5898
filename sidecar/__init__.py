"""The sidecar that runs next to SD WebUI in each GameServer pod (``python -m sidecar``).

It tells Agones, through the SDK server's REST API on localhost, when the WebUI is ready and
whether it is still alive, and once the pod is given to a person it points the WebUI's outputs at
that person's folder on the shared volume. It binds no port. Settings: `sidecar.settings`.
"""
