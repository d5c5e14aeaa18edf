"""Metric plugins for diffctl."""
