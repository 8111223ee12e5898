"""`make deploy`: everything sd-allocator needs in a Google Cloud project, from one config file.

    python -m deploy --config deploy.yaml [--plan] [--only STEP ...]

Each step checks what exists first and changes only what is missing or wrong, so running it
again is safe. `--plan` prints every command and API request without running anything.
"""
