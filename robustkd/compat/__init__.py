"""Compatibility shims for third-party packages that do not import as shipped."""
