"""The sidecar that runs next to SD WebUI in each GameServer pod (``python -m sidecar``).

It tells Agones, through the SDK server's REST API on localhost, when the WebUI is ready and
whether it is still alive, and once the pod is given to a person it delivers every file the WebUI
saves in its pod-local outputs folder to that person's folder on the shared volume
(`sidecar.delivery`), which only the sidecar mounts, and confirms that with a GameServer annotation
(`sidecar.ownership`). It never changes the WebUI's settings and binds no port. Settings:
`sidecar.settings`.
"""
