"""Kernel back ends of the simulated host (see base.py); no front end here."""
