"""Tests of the scripts in tools/, run for real."""
