"""Tests of the simulated OpenVZ host (vzsim)."""
