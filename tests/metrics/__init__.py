"""Tests of the metrics each Wyoming service exports about itself."""
