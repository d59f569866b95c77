"""nova-openvz: OpenStack Nova compute driver for OpenVZ containers."""
