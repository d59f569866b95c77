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

"""Glance images to containers through Nova's API.

The template cache downloads an image once however many servers boot from
it at the same moment, checks it against Glance's hash, refuses what is
not an OS template before downloading it, and forgets templates no server
uses any more.  Rebuild puts a server on another image.
"""

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import time

from nova import context as nova_context
from oslo_utils import uuidutils
import testtools.content

from nova_openvz import images
from nova_openvz.testing import allinone
from vzsim import templates


def template_with(base, files):
    """A gzip OS template: ``base`` plus ``{path: text}`` files."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(base), mode='r:*') as src, \
            tarfile.open(fileobj=out, mode='w:gz') as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member)
                        if member.isfile() else None)
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo('./' + path)
            info.size, info.mode, info.mtime = len(data), 0o644, time.time()
            dst.addfile(info, io.BytesIO(data))
    return out.getvalue()


class ImagesTestCase(allinone.OpenVZCloudTestCase):

    def setUp(self):
        super().setUp()
        self.ctxt = nova_context.get_admin_context()
        self.downloads = []
        real_download = type(self.glance).download

        self.download_ends = []
        self.download_seconds = 0

        def counting(glance, context, image_id, *args, **kwargs):
            self.downloads.append(image_id)
            time.sleep(self.download_seconds)
            try:
                return real_download(glance, context, image_id, *args,
                                     **kwargs)
            finally:
                self.download_ends.append(time.monotonic())
        self.stub_out('nova.tests.fixtures.GlanceFixture.download',
                      counting)
        self.asked = []
        real_ensure = images.TemplateCache.ensure

        def ensure(cache, context, instance, image_meta):
            self.asked.append(time.monotonic())
            return real_ensure(cache, context, instance, image_meta)
        self.stub_out('nova_openvz.images.TemplateCache.ensure', ensure)

    def base_template(self):
        if self.kernel_backend == 'real':
            return allinone.busybox_template()
        return templates.minimal_template_bytes()

    def upload(self, data, disk_format='raw', container_format='bare',
               properties=None, **extra):
        image = dict({
            'id': uuidutils.generate_uuid(),
            'name': 'image-%d' % len(self.glance.images),
            'status': 'active', 'disk_format': disk_format,
            'container_format': container_format, 'visibility': 'public',
            'size': len(data), 'properties': properties or {},
            'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(data).hexdigest()}, **extra)
        return self.glance.create(self.ctxt, image, data=io.BytesIO(data))

    def boot_image(self, image_id, name='ct', expected_state='ACTIVE'):
        return self._create_server(name=name, image_uuid=image_id,
                                   flavor_id='1', networks='none',
                                   expected_state=expected_state)

    def cache_files(self):
        cache = os.path.join(self.vzhost.root, 'vz/template/cache')
        return sorted(os.listdir(cache))

    def fault(self, server):
        return self.api.get_server(server['id'])['fault']['message']


class TestTemplateCache(ImagesTestCase):

    def test_ten_concurrent_boots_download_the_image_once(self):
        image = self.upload(self.base_template(),
                            properties={'os_distro': 'debian'})
        # Slow enough that the concurrent boots ask meanwhile.
        self.download_seconds = 3
        # Ten one-vCPU servers on a small machine: room in Placement.
        self.flags(cpu_allocation_ratio=16.0)
        self._run_periodics()
        self.api.post_server({'server': {
            'name': 'many', 'imageRef': image['id'], 'flavorRef': '1',
            'networks': 'none', 'min_count': 10, 'max_count': 10}})
        servers = self.api.get_servers(search_opts={'name': 'many'})
        self.assertEqual(10, len(servers))
        for server in servers:
            self._wait_for_state_change(server, 'ACTIVE', max_retries=240)
        self.assertEqual([image['id']], self.downloads)
        # The boots really overlapped: several asked for the template
        # while its one download ran (how many depends on the machine's
        # speed; the rest found it cached).
        self.assertEqual(10, len(self.asked))
        overlapped = len([t for t in self.asked
                          if t < self.download_ends[0]])
        self.addDetailUniqueName('overlapped', testtools.content.text_content(
            str(overlapped)))
        self.assertGreater(overlapped, 1)
        running = [r for r in self.vzlist() if r['status'] == 'running']
        self.assertEqual(10, len(running))
        self.assertEqual(1, len([f for f in self.cache_files()
                                 if image['id'] in f]))
        self.assertEqual([], os.listdir(os.path.join(self.vzhost.root,
                                                     'staging')))

    def test_template_name_carries_distro_version_and_architecture(self):
        image = self.upload(self.base_template(), properties={
            'os_distro': 'ubuntu', 'os_version': '22.04',
            'architecture': 'x86_64'})
        server = self.boot_image(image['id'])
        config = self.vzhost.run('vzlist', '-H', '-o', 'ostemplate',
                                 str(self.container(server)['ctid']))[1]
        self.assertEqual('ubuntu-22.04-x86_64-nova-%s' % image['id'],
                         config.strip())

    def test_a_download_that_does_not_match_glance_hash_is_refused(self):
        self.flags(max_attempts=1, group='scheduler')
        image = self.upload(self.base_template(),
                            os_hash_value=hashlib.sha512(b'x').hexdigest())
        server = self.boot_image(image['id'], expected_state='ERROR')
        self.assertIn('does not match the sha512 hash', self.fault(server))
        self.assertEqual([], [f for f in self.cache_files()
                              if image['id'] in f])
        self.assertEqual([], self.vzhost.all_leftovers())

    def test_disk_images_are_refused_before_any_download(self):
        self.flags(max_attempts=1, group='scheduler')
        for disk_format, container_format in (('qcow2', 'bare'),
                                              ('iso', 'bare'),
                                              ('ploop', 'ovf'),
                                              ('raw', 'ovf')):
            image = self.upload(b'QFI\xfb' + b'\0' * 508,
                                disk_format=disk_format,
                                container_format=container_format)
            server = self.boot_image(image['id'], name=disk_format,
                                     expected_state='ERROR')
            fault = self.fault(server)
            self.assertIn(images.ACCEPTED, fault)
            self.assertNotIn(image['id'], self.downloads)
        self.assertEqual([], self.vzhost.all_leftovers())

    def _cache_pass(self):
        self.compute.manager._run_image_cache_manager_pass(self.ctxt)

    def test_image_cache_removes_only_unused_old_nova_templates(self):
        kept = self.upload(self.base_template())
        dropped = self.upload(self.base_template())
        in_use = self.boot_image(kept['id'], name='in-use')
        gone = self.boot_image(dropped['id'], name='gone')
        self._delete_server(gone)
        # A template the operator put there by hand is not ours to remove.
        own = os.path.join(self.vzhost.root,
                           'vz/template/cache/centos-7-x86_64.tar.gz')
        with open(own, 'wb') as f:
            f.write(self.base_template())
        os.utime(own, (0, 0))

        # Young unused templates stay (the default minimum age is a day).
        self._cache_pass()
        self.assertEqual(3, len(self.cache_files()))
        self.flags(remove_unused_original_minimum_age_seconds=0,
                   group='image_cache')
        self.flags(remove_unused_base_images=False, group='image_cache')
        self._cache_pass()
        self.assertEqual(3, len(self.cache_files()))
        self.flags(remove_unused_base_images=True, group='image_cache')
        self._cache_pass()
        self.assertEqual(['centos-7-x86_64.tar.gz',
                          'nova-%s.tar.gz' % kept['id']],
                         self.cache_files())
        # The server still runs, and a new boot downloads the dropped
        # image again.
        self.assertEqual('running', self.container(in_use)['status'])
        self.boot_image(dropped['id'], name='again')
        self.assertEqual(2, self.downloads.count(dropped['id']))


class TestPloopImages(ImagesTestCase):
    """``disk_format=ploop`` images: a ploop delta holding a root tree."""

    def ploop_delta(self, files):
        """A delta made with the host's own ploop, holding ``files``.

        Its ext4 filesystem has the base template and ``{path: text}``.
        """
        made = os.path.join(self.vzhost.root, 'made-%s'
                            % uuidutils.generate_uuid())
        mount = os.path.join(made, 'mnt')
        os.makedirs(mount)
        self.addCleanup(shutil.rmtree, made, ignore_errors=True)
        delta = os.path.join(made, 'root.hdd')
        descriptor = os.path.join(made, 'DiskDescriptor.xml')
        self.host_tool('ploop', 'init', '-s', '32M', '-t', 'ext4', delta)
        self.host_tool('ploop', 'mount', '-m', mount, descriptor)
        try:
            subprocess.run(['tar', '-xz', '--numeric-owner', '-C', mount],
                           input=self.base_template_gz(), check=True)
            for path, text in files.items():
                with open(os.path.join(mount, path), 'w') as f:
                    f.write(text)
        finally:
            self.host_tool('ploop', 'umount', '-m', mount)
        with open(delta, 'rb') as f:
            return f.read()

    def base_template_gz(self):
        return template_with(self.base_template(), {})

    def host_tool(self, *argv):
        code, out, err = self.vzhost.run(*argv)
        self.assertEqual(0, code, err)
        return out

    def staged(self):
        root = self.vzhost.root
        return sorted(os.listdir(os.path.join(root, 'staging')) +
                      [name for name in os.listdir(os.path.join(root,
                                                                'vz/root'))
                       if name.startswith('nova-ploop-')])

    def test_a_ploop_image_boots_with_its_files(self):
        if self.kernel_backend != 'real':
            self.skipTest('a modelled ploop delta carries no files; this '
                          'host runs the %s backend' % self.kernel_backend)
        image = self.upload(
            self.ploop_delta({'etc/made-in': 'a ploop image\n'}),
            disk_format='ploop', properties={'os_distro': 'debian'})
        first = self.boot_image(image['id'], name='first')
        # The template serves either layout.
        self.flags(layout='simfs', group='openvz')
        second = self.boot_image(image['id'], name='second')
        for server, layout in ((first, 'ploop'), (second, 'simfs')):
            ctid = str(self.container(server)['ctid'])
            self.assertEqual(layout, self.host_tool(
                'vzlist', '-H', '-o', 'layout', ctid).strip())
            self.assertEqual('a ploop image\n', self.host_tool(
                'vzctl', 'exec2', ctid, 'cat /etc/made-in'))
        # Converted once: one download, one template, nothing staged or
        # mounted afterwards.
        self.assertEqual([image['id']], self.downloads)
        self.assertEqual(['debian-nova-%s.tar.gz' % image['id']],
                         [f for f in self.cache_files() if image['id'] in f])
        self.assertEqual([], self.staged())
        # The ploop server's own disk is attached; the image's is not.
        attached = self.host_tool('ploop', 'list', '-a')
        self.assertEqual(1, len(attached.splitlines()))
        self.assertNotIn(image['id'], attached)

    def test_a_corrupt_ploop_image_fails_with_ploops_own_words(self):
        self.flags(max_attempts=1, group='scheduler')
        image = self.upload(b'QFI\xfb' + b'\0' * (1024 * 1024 - 4),
                            disk_format='ploop')
        server = self.boot_image(image['id'], expected_state='ERROR')
        fault = self.fault(server)
        self.assertIn('ploop restore-descriptor failed with exit code 11',
                      fault)
        self.assertIn('Invalid image header in root.hdd: not a ploop1 delta',
                      fault)
        self.assertEqual([], [f for f in self.cache_files()
                              if image['id'] in f])
        self.assertEqual([], self.staged())
        self.assertEqual([], self.vzhost.all_leftovers())


class TestRebuild(ImagesTestCase):

    def test_rebuild_runs_the_new_image_and_keeps_the_identity(self):
        first = self.upload(template_with(self.base_template(),
                                          {'etc/image-name': 'first\n'}))
        second = self.upload(template_with(self.base_template(),
                                           {'etc/image-name': 'second\n'}))
        server = self.boot_image(first['id'], name='rebuilt')
        before = self.container(server)
        server = self._rebuild_server(server, second['id'])
        self.assertEqual(second['id'], server['image']['id'])
        after = self.container(server)
        self.assertEqual('running', after['status'])
        # Same instance UUID (the container NAME), hostname and CT ID.
        self.assertEqual(before['name'], after['name'])
        self.assertEqual(before['ctid'], after['ctid'])
        self.assertEqual(before['hostname'], after['hostname'])
        private = os.path.join(self.vzhost.root, 'vz/root/%d'
                               % after['ctid'])
        if self.kernel_backend == 'real':
            code, out, err = self.vzhost.run('vzctl', 'exec2', after['ctid'],
                                             'cat /etc/image-name')
            self.assertEqual((0, 'second\n'), (code, out), err)
        else:
            with open(os.path.join(private, 'etc/image-name')) as f:
                self.assertEqual('second\n', f.read())
