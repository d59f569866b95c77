"""Tests of nova-openvz."""
