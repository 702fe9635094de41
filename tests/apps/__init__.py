"""Test apps for the release tests, and the helper that materialises their versions (see versions.py)."""
