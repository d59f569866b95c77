#!/usr/bin/env python3
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

"""Write the fault matrix page from the definition the test checks.

Run from the source tree after changing ``nova_openvz/testing/
faultmatrix.py`` (the functional test ``test_fault_matrix`` says when)::

    python tools/fault_matrix.py           # rewrite the page
    python tools/fault_matrix.py --check   # exit 1 if the page is stale
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from nova_openvz.testing import faultmatrix  # noqa: E402

PAGE = os.path.join(os.path.dirname(__file__), '..', 'doc', 'source',
                    'admin', 'fault-matrix.rst')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='only say whether the page is up to date')
    args = parser.parse_args(argv)
    text = faultmatrix.render()
    if args.check:
        with open(PAGE) as f:
            if f.read() != text:
                print('%s is stale: run tools/fault_matrix.py' % PAGE)
                return 1
        return 0
    with open(PAGE, 'w') as f:
        f.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
