"""Escape suite: the seed directory (--workspace-from). A seed may hold symlinks and hard links
that point at host files; writing through them inside the cell must never reach the host, the
seeding must not follow them on the host side (CVE-2021-30465 style races included), and the
seed tree must be byte-identical afterwards."""
import os
import stat
import threading
import unittest

from cellcheck import UNPRIVILEGED, CellTest, file_digest, tree_digest


class SeedTricks(CellTest):
    def setUp(self):
        super().setUp()
        self.hostdir = os.path.join(self.tmp, "host")
        os.mkdir(self.hostdir, 0o755)
        self.canary = os.path.join(self.hostdir, "canary.txt")
        with open(self.canary, "w") as f:
            f.write("host canary, must not change\n")
        os.chmod(self.canary, 0o666)  # writable by anyone: only the sandbox stands in the way
        self.secret = os.path.join(self.hostdir, "secret.txt")
        self.secret_text = "ABX-HOST-SECRET-%s" % os.urandom(6).hex()
        with open(self.secret, "w") as f:
            f.write(self.secret_text + "\n")
        os.chmod(self.secret, 0o644)

    def test_write_through_absolute_symlink(self):
        seed = self.seed(files={"a.txt": "a\n"})
        os.symlink(self.canary, os.path.join(seed, "link"))
        os.symlink(self.hostdir, os.path.join(seed, "dirlink"))
        digest, cdigest = tree_digest(seed), file_digest(self.canary)
        self.ran(self.cell(["/bin/sh", "-c", "echo PWNED > /workspace/link; echo PWNED > /workspace/dirlink/new;"
                   " echo PWNED >> /workspace/dirlink/canary.txt; true"], seed=seed))
        self.assertEqual(file_digest(self.canary), cdigest, "the host canary changed")
        self.assertFalse(os.path.exists(os.path.join(self.hostdir, "new")))
        self.assertEqual(tree_digest(seed), digest, "the seed tree changed")

    def test_write_through_relative_symlink(self):
        seed = self.seed(files={"a.txt": "a\n"})
        rel = os.path.relpath(self.canary, seed)
        os.symlink(rel, os.path.join(seed, "rel"))
        os.symlink("../../../../../../../../.." + self.canary, os.path.join(seed, "deep"))
        digest, cdigest = tree_digest(seed), file_digest(self.canary)
        self.ran(self.cell(["/bin/sh", "-c", "echo PWNED > /workspace/rel; echo PWNED > /workspace/deep; true"], seed=seed))
        self.assertEqual(file_digest(self.canary), cdigest)
        self.assertEqual(tree_digest(seed), digest)

    def test_write_through_hard_link(self):
        seed = self.seed()
        os.link(self.canary, os.path.join(seed, "hard.txt"))
        digest, cdigest = tree_digest(seed), file_digest(self.canary)
        r = self.cell(["/bin/sh", "-c", "cat /workspace/hard.txt; echo PWNED >> /workspace/hard.txt;"
                       " echo PWNED > /workspace/new.txt; chmod 777 /workspace; cat /workspace/hard.txt"], seed=seed)
        self.assertIn("PWNED", r.out, "the write inside the cell should work on its own copy: %r" % r)
        self.assertEqual(file_digest(self.canary), cdigest, "the host file behind a hard link changed")
        self.assertEqual(tree_digest(seed), digest, "the seed tree changed")
        self.assertEqual(os.stat(seed).st_mode & 0o777, 0o755)

    def test_seeding_does_not_follow_symlinks(self):
        # If seeding copied the target of a symlink, the host secret would be readable inside.
        seed = self.seed()
        os.symlink(self.secret, os.path.join(seed, "leak"))
        os.symlink(self.hostdir, os.path.join(seed, "leakdir"))
        secret = self.secret_text
        r = self.cell(["/bin/sh", "-c", "cat /workspace/leak /workspace/leakdir/secret.txt; ls -la /workspace;"
                       " readlink /workspace/leak"], seed=seed)
        self.assertNotIn(secret, r.out + r.err, "a host file leaked through a seed symlink")
        self.assertIn(self.secret, r.out, "the symlink should arrive as a symlink: %r" % r)

    def test_seed_left_byte_identical(self):
        seed = self.seed("ids", files={"src/main.c": "int main(void){return 0;}\n", "data.bin": os.urandom(4096),
                                       "dir/sub/f": "x\n"})
        os.chmod(os.path.join(seed, "dir", "sub", "f"), 0o604)
        digest, st = tree_digest(seed), os.stat(seed)
        self.ran(self.cell(["/bin/sh", "-c", "rm -rf /workspace/src /workspace/dir; echo x >> /workspace/data.bin;"
                   " touch /workspace/new; chmod 000 /workspace/ids; mkdir /workspace/d2; true"], seed=seed))
        self.assertEqual(tree_digest(seed), digest, "the seed tree changed")
        self.assertEqual(os.stat(seed).st_mtime_ns, st.st_mtime_ns)

    def test_symlink_swap_race_while_seeding(self):
        # A host process flips seed/sub between a real directory and a symlink to a host
        # directory while cells are being seeded (CVE-2021-30465's shape). The host secret
        # must never show up inside, and the host directory must stay as it was.
        seed = self.seed(files={"sub/ok.txt": "ok\n"})
        sub, tmp_link = os.path.join(seed, "sub"), os.path.join(seed, "sub.link")
        real = os.path.join(seed, "sub.real")
        os.rename(sub, real)
        os.symlink(self.hostdir, tmp_link)
        secret = self.secret_text
        host_digest = tree_digest(self.hostdir)
        stop = threading.Event()

        def flip():
            while not stop.is_set():
                for src in (real, tmp_link):
                    try:
                        os.rename(src, sub)
                        os.rename(sub, src)
                    except OSError:
                        pass

        t = threading.Thread(target=flip)
        t.start()
        try:
            for _ in range(15):
                r = self.cell(["/bin/sh", "-c", "cat /workspace/sub/secret.txt 2>/dev/null;"
                               " echo PWNED > /workspace/sub/canary.txt 2>/dev/null; true"],
                              seed=seed, check_setup=False)
                self.assertNotIn(secret, r.out, "the host secret leaked into a cell during a seed race")
        finally:
            stop.set()
            t.join()
        self.assertEqual(tree_digest(self.hostdir), host_digest, "the host directory changed")

    def test_cleanup_does_not_follow_cell_symlinks(self):
        # The cell plants symlinks to host paths in its workspace; whatever cleans up after
        # the cell must not delete through them.
        victim = os.path.join(self.hostdir, "victim")
        os.mkdir(victim, 0o777)
        for i in range(3):
            with open(os.path.join(victim, "f%d" % i), "w") as f:
                f.write("keep\n")
        digest = tree_digest(self.hostdir)
        self.ran(self.cell(["/bin/sh", "-c", "ln -s %s /workspace/v; ln -s %s /workspace/c; mkdir -p /workspace/d;"
                   " ln -s / /workspace/d/root; true" % (victim, self.canary)], seed=self.seed()))
        self.assertEqual(tree_digest(self.hostdir), digest)

    def test_seed_device_node_is_inert(self):
        # A seed holding a device node (here the numbers of /dev/null, harmless; a real attack
        # would use the host disk's) must not give the cell a working device: either the node
        # is not copied, or /workspace is nodev.
        if UNPRIVILEGED:
            self.skipTest("only root can create a device node in a seed")
        seed = self.seed()
        os.mknod(os.path.join(seed, "dev"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        r = self.cell(["/bin/sh", "-c", "ls -l /workspace/dev; [ -c /workspace/dev ] && echo x > /workspace/dev && echo DEVICE_WORKS; true"],
                      seed=seed, check_setup=False)
        self.assertNotIn("DEVICE_WORKS", r.out, r)

    def test_seed_fifo_does_not_hang(self):
        seed = self.seed(files={"a": "a\n"})
        os.mkfifo(os.path.join(seed, "fifo"))
        r = self.cell(["/bin/true"], seed=seed, check_setup=False, timeout=30)
        self.assertIn(r.rc, (0, 125), r)

    def test_seed_very_deep_tree(self):
        # 400 nested directories (a copier recursing per level must cope): seeding must end promptly, either copying the tree or
        # refusing it (125), and leave the seed as it was.
        seed = self.seed()
        d = seed
        for _ in range(400):
            d = os.path.join(d, "d")
            os.mkdir(d)
        digest = tree_digest(seed)
        r = self.cell(["/bin/true"], seed=seed, check_setup=False, timeout=60)
        self.assertIn(r.rc, (0, 125), r)
        self.assertLess(r.wall_s, 30, r)
        self.assertEqual(tree_digest(seed), digest)

    def test_seed_larger_than_quota(self):
        # The quota bounds what the cell stores: a seed above --disk either fails cleanly (125,
        # copy seeding) or stays on the read-only lower layer (overlay seeding), where changing
        # it needs a copy-up that the quota refuses. Never does the cell hold more than --disk.
        seed = self.seed(files={"big.bin": b"\0" * (12 << 20)})
        digest = tree_digest(seed)
        r = self.cell(["/bin/sh", "-c", "echo x >> /workspace/big.bin && echo APPENDED; true"], seed=seed,
                      opts=["--disk", "8M"], check_setup=False)
        self.assertEqual(tree_digest(seed), digest)
        if r.rc == 125:
            self.assertIn("agentbox", r.err)
            return
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("APPENDED", r.out, "a 12 MiB file was copied up into an 8 MiB workspace: %r" % r)
        self.assertLessEqual((r.meta or {}).get("disk_bytes", 0), 8 << 20, r)

    def test_host_filesystem_invisible(self):
        r = self.cell(["/bin/sh", "-c", "ls %s; cat %s; ls /; true" % (self.hostdir, self.secret)])
        self.assertNotIn(self.secret_text, r.out)
        self.assertNotIn("canary.txt", r.out)


if __name__ == "__main__":
    unittest.main()
