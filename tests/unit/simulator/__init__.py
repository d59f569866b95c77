"""Tests of the simulated OpenVZ host, through its real executables."""
