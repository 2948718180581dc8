"""Experiments: the tutorial's claims as configs under ``experiments/`` run by ``visionattn experiment NAME``."""
