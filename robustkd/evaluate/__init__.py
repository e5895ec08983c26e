"""Evaluation: metrics and suites (clean, corruption, adversarial, calibration, certified, relations)."""
