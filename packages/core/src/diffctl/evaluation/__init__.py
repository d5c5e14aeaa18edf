"""Evaluation helpers shared by runs and reports."""
