"""Blocklist exports (issue #19): pure formats over the reader's records."""
