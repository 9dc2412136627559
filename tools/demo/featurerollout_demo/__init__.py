"""The demo: a small HTTP service whose flagged requests fail at a rate you choose (see service.py)."""
