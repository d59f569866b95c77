"""Container status (vzlist/vzctl) to Nova power state."""

from nova.compute import power_state

#: vzlist's STATUS column.  "mounted" is a stopped container whose disk is
#: mounted; "suspended" has a checkpoint dump waiting to be restored.
VZLIST_STATUS = {
    'running': power_state.RUNNING,
    'stopped': power_state.SHUTDOWN,
    'mounted': power_state.SHUTDOWN,
    'suspended': power_state.SUSPENDED,
}


def from_vzlist(status):
    return VZLIST_STATUS.get(status, power_state.NOSTATE)
