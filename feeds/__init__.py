"""Pullers for external feeds (TAXII 2.0/2.1, MISP, CSV, text), handing STIX 2.1 to ingest."""
