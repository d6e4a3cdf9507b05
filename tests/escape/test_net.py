"""Escape suite: the network. A cell has its own network namespace with nothing but lo: host
services on loopback (TCP v4 and v6, UDP) and abstract Unix sockets (which belong to the
network namespace) are out of reach. Host side: the listeners record every connection."""
import os
import socket
import unittest

from cellcheck import CellTest, marker


class Listener:
    def __init__(self, family, kind, addr):
        self.sock = socket.socket(family, kind)
        self.sock.bind(addr)
        if kind == socket.SOCK_STREAM:
            self.sock.listen(16)
        self.sock.setblocking(False)
        self.kind = kind

    def reached(self):
        try:
            if self.kind == socket.SOCK_STREAM:
                c, _ = self.sock.accept()
                c.close()
            else:
                self.sock.recv(100)
            return True
        except BlockingIOError:
            return False

    def close(self):
        self.sock.close()


class Network(CellTest):
    def attack(self, listener, *args):
        try:
            r = self.probe("connect", *args)
            reached = listener.reached()
        finally:
            listener.close()
        self.assertFalse(reached, "a host listener was reached from the cell: %r" % r)
        self.assertRegex(r.out, r"(connect|socket)=", "the probe did not run: %r" % r)
        self.assertNotIn("connect=0", r.out, r)
        return r

    def test_tcp4_loopback(self):
        lst = Listener(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0))
        self.attack(lst, "tcp4", str(lst.sock.getsockname()[1]))

    def test_tcp6_loopback(self):
        try:
            lst = Listener(socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0))
        except OSError as e:
            self.skipTest("no IPv6 loopback on this host: %s" % e)
        self.attack(lst, "tcp6", str(lst.sock.getsockname()[1]))

    def test_udp4_loopback(self):
        lst = Listener(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0))
        try:
            r = self.probe("connect", "udp4", str(lst.sock.getsockname()[1]))
            reached = lst.reached()
        finally:
            lst.close()
        self.assertFalse(reached, "a UDP datagram from the cell reached the host: %r" % r)
        self.assertRegex(r.out, r"(connect|socket)=", "the probe did not run: %r" % r)

    def test_abstract_unix_socket(self):
        name = marker("sock")
        lst = Listener(socket.AF_UNIX, socket.SOCK_STREAM, "\0" + name)
        self.attack(lst, "abstract", name)

    def test_only_loopback_interface(self):
        r = self.cell(["/bin/cat", "/proc/net/dev"])
        ifaces = {ln.split(":")[0].strip() for ln in r.out.splitlines()[2:] if ":" in ln}
        self.assertEqual(ifaces, {"lo"}, r)

    def test_dns_and_outside_unreachable(self):
        # Nothing outside either: a public address fails at once (no route or denied socket).
        r = self.cell(["/bin/bash", "-c", "(exec 3<>/dev/tcp/1.1.1.1/53) 2>/dev/null && echo CONNECTED; true"], timeout=30)
        self.assertNotIn("CONNECTED", r.out)
        self.assertEqual(r.rc, 0, r)


if __name__ == "__main__":
    unittest.main()
