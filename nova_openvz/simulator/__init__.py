"""Test fixtures of the simulated host (moving to nova_openvz.testing)."""
