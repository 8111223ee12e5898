"""``python -m sidecar``."""

from sidecar.main import main

main()
