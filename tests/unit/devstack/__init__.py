"""Tests of the devstack plugin (devstack/), with a stand-in for devstack."""
