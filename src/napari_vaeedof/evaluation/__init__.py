"""Evaluation: full-reference image metrics and classical focus-stack fusion baselines."""
