"""Distillation: a frozen teacher, a student, and named loss terms (CE, KD, DIST, CMKD and add-ons)."""
