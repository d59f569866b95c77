"""Unit tests: no OpenVZ host needed; the simulated host stands in."""
