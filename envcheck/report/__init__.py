"""Renderers: format snapshots, findings, plans and validation reports. They only format."""
