# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

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


def of(record):
    """Power state of a listing record: PAUSED when Nova froze it."""
    if record.paused:
        return power_state.PAUSED
    return from_vzlist(record.status)
