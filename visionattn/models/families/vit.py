"""Placeholder: presets of this family are being written."""
