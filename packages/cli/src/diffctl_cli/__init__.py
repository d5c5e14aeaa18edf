"""The diffctl command line."""
