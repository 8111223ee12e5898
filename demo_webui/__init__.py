"""A small Gradio stand-in for AUTOMATIC1111 Stable Diffusion WebUI, for local runs and tests.

Not for production. Run it with
``python -m demo_webui --port PORT --user-dir DIR --outputs-dir DIR``.
This package imports nothing heavy at the top: the CLI must answer ``--help`` and bad arguments
without loading Gradio.
"""
