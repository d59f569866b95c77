"""Tests of vzsim.cli: the simulated tools, run as their real executables."""
