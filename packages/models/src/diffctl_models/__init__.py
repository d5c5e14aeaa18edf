"""Denoiser plugins for diffctl."""
