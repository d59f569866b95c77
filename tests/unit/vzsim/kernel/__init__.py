"""Tests of vzsim.kernel: the simulated kernel back ends."""
