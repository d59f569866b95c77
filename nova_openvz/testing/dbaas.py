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

"""A database server in a container, as a DBaaS (Trove) runs one.

Shared by the opt-in scenario test (``tests/functional/
test_dbaas_scenario.py``) and the benchmark (``tools/benchmark_dbaas.py``):

* :func:`template` -- the PostgreSQL template tarball, built once with
  :func:`vzsim.templates.build_postgresql_template` and kept in a cache
  directory, so later runs skip the build;
* :func:`user_data` -- what a server's config drive gives cloud-init at
  first boot: the data volume's file system, the database cluster on it,
  a user and a database;
* :data:`LEDGER` and :func:`committed` -- a pgbench transaction (pgbench's
  TPC-B-like one plus a ledger row) and the transactions pgbench's log
  says committed, so rows can be counted against commits.
"""

import os

from vzsim import templates

#: Where built templates are kept, instead of :data:`CACHE_DIR`.
CACHE_ENV = 'NOVA_OPENVZ_TEMPLATE_CACHE'
#: The default cache: the build needs root, and not $HOME (Nova's test
#: base gives each test a temporary one).
CACHE_DIR = '/var/cache/nova-openvz/templates'
#: Another Debian mirror for the template build.
MIRROR_ENV = templates.MIRROR_ENV
TEMPLATE = 'debian-12-nova-postgresql'

#: The data volume inside the server, and where PostgreSQL keeps its data
#: (Debian's default, which is where Trove mounts the volume too).
DEVICE = '/dev/vdb'
DATA = '/var/lib/postgresql'


def cache_dir():
    return os.environ.get(CACHE_ENV) or CACHE_DIR


def template(directory=None):
    """The PostgreSQL template tarball's path; built when not cached.

    The build (root, debootstrap, a Debian mirror; minutes) logs to
    ``<TEMPLATE>.log`` beside it.  A build that fails leaves no tarball.
    """
    return templates.cached(directory or cache_dir(), TEMPLATE,
                            templates.build_postgresql_template)


_USER_DATA = r"""#!/bin/sh
# First boot of a database server (run once by cloud-init from the config
# drive): PostgreSQL's data and configuration on the data volume, then a
# user and a database.  A volume that already holds a database keeps it.
set -eu
DEVICE=%(device)s
DATA=%(data)s
for version in /usr/lib/postgresql/*; do VERSION=${version##*/}; done
CONF=/etc/postgresql/$VERSION/main
blkid "$DEVICE" >/dev/null || mkfs.ext4 -q -L pgdata "$DEVICE"
grep -q "^$DEVICE " /etc/fstab ||
    echo "$DEVICE $DATA ext4 defaults 0 2" >>/etc/fstab
mountpoint -q "$DATA" || mount "$DATA"
chown postgres:postgres "$DATA"
mkdir -p "$(dirname "$CONF")"
if [ -d "$DATA/conf" ]; then
    ln -sfn "$DATA/conf" "$CONF"
else
    pg_createcluster "$VERSION" main
    mv "$CONF" "$DATA/conf"
    ln -s "$DATA/conf" "$CONF"
fi
pg_ctlcluster "$VERSION" main start
su postgres -c 'psql -q -v ON_ERROR_STOP=1' <<'SQL'
SELECT 'CREATE ROLE %(user)s LOGIN PASSWORD ''%(password)s'''
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%(user)s')\gexec
SELECT 'CREATE DATABASE %(database)s OWNER %(user)s'
  WHERE NOT EXISTS (SELECT FROM pg_database
                    WHERE datname = '%(database)s')\gexec
SQL
echo "nova-openvz-dbaas: database %(database)s ready"
"""


def user_data(user, password, database, device=DEVICE, data=DATA):
    """The first-boot script for a server's user data (see above).

    ``user``, ``password`` and ``database`` are plain identifiers (letters,
    digits, underscores): they go into SQL unquoted.
    """
    for value in (user, password, database):
        if not value.replace('_', '').isalnum():
            raise ValueError('not a plain identifier: %r' % value)
    return _USER_DATA % dict(user=user, password=password,
                             database=database, device=device, data=data)


#: The ledger pgbench's transactions write: one row per committed
#: transaction, keyed by the run, pgbench's client and that client's
#: transaction number (the one pgbench's --log writes).
LEDGER_TABLE = ('CREATE TABLE IF NOT EXISTS ledger (run int, client int, '
                'n bigint, PRIMARY KEY (run, client, n))')

#: pgbench's TPC-B-like transaction plus the ledger row.  ``n`` counts
#: this client's transactions (``-D n=0``; pgbench keeps a client's
#: variables from one transaction to the next), ``run`` tells runs apart.
LEDGER = r"""\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
\set n :n + 1
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
  VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
INSERT INTO ledger VALUES (:run, :client_id, :n);
END;
"""


def committed(log_text):
    """``{(client, n)}`` of the transactions a pgbench log says committed.

    A line is ``client_id transaction_no time script_no epoch us``; the
    time of a failed transaction is a word (``failed``...), not a number.
    """
    done = set()
    for line in log_text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2].isdigit():
            done.add((int(fields[0]), int(fields[1])))
    return done
