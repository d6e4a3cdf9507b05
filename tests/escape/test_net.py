"""Escape suite: the network. A cell has its own network namespace with nothing but lo: host
services on loopback (TCP v4 and v6, UDP) and abstract Unix sockets (which belong to the
network namespace) are out of reach. Host side: the listeners record every connection."""
import os
import socket
import unittest

from cellcheck import AGENTBOX, CellTest, marker


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

    def test_cells_cannot_reach_each_other(self):
        # Cell A listens on an abstract socket and on 127.0.0.1; cell B, running at the same
        # time, tries both. Each cell has its own network namespace, so neither is reachable.
        import subprocess
        name = marker("cell")
        listener = ("import socket,sys\n"
                    "u=socket.socket(socket.AF_UNIX);u.bind('\\0%s');u.listen(4);u.settimeout(0.2)\n"
                    "t=socket.socket();t.bind(('127.0.0.1',0));t.listen(4);t.settimeout(0.2)\n"
                    "print('port', t.getsockname()[1], flush=True)\n"
                    "sys.stdin.readline()\n"
                    "for s in (u,t):\n"
                    "    try: s.accept(); print('ACCEPTED', flush=True)\n"
                    "    except OSError: pass\n" % name)
        a = subprocess.Popen([AGENTBOX, "exec", "--timeout", "30", "--", "/usr/bin/python3", "-c", listener],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = a.stdout.readline().decode()
            self.assertTrue(line.startswith("port "), (line, a.stderr.read(2000) if not line else ""))
            port = line.split()[1]
            r = self.probe("connect", "abstract", name)
            r2 = self.probe("connect", "tcp4", port)
            a.stdin.write(b"go\n")
            a.stdin.close()
            rest = a.stdout.read().decode()
            a.wait(timeout=30)
        finally:
            if a.poll() is None:
                a.kill()
                a.wait()
            a.stdout.close()
            a.stderr.close()
        self.assertNotIn("ACCEPTED", rest, "one cell reached another")
        self.assertNotIn("connect=0", r.out + r2.out, (r, r2))
        self.assertRegex(r.out + r2.out, r"connect=E", (r, r2))

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


class NextCellOnTheSlot(CellTest):
    """What one cell leaves in the network stack must not reach the next cell on the same slot
    (pinned to slot 0). Each cell has a network namespace of its own, which goes with
    it; a namespace kept per slot would fail this test: per-namespace counters (/proc/net/snmp),
    TIME_WAIT sockets (/proc/net/tcp, and the port still taken) and sysctls outlive the cells."""
    LEAVE = ("import os, socket, subprocess, time\n"
             # a listener and an abstract socket, held by a daemon that tries to outlive the cell
             "subprocess.Popen(['/usr/bin/python3', '-c', \"import socket,time\\n"
             "t=socket.socket();t.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
             "t.bind(('127.0.0.1',%(listen)d));t.listen(4)\\n"
             "u=socket.socket(socket.AF_UNIX);u.bind('\\\\0%(name)s');u.listen(4)\\n"
             "time.sleep(60)\"], start_new_session=True)\n"
             # a TIME_WAIT connection on a known local port: the client closes first
             "l=socket.socket();l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
             "l.bind(('127.0.0.1',0));l.listen(1)\n"
             "c=socket.socket();c.bind(('127.0.0.1',%(tw)d));c.connect(l.getsockname())\n"
             "a,_=l.accept();c.close();time.sleep(0.1);a.close();l.close()\n"
             "print('tw=' + str(open('/proc/net/tcp').read().count(' 06 ')))\n"
             # counters: datagrams sent on lo
             "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
             "for i in range(%(dgrams)d): s.sendto(b'x',('127.0.0.1',9))\n"
             # a sysctl write attempt
             "try:\n"
             "    open('/proc/sys/net/ipv4/tcp_fin_timeout','w').write('7'); print('sysctl written')\n"
             "except OSError as e: print('sysctl', e.errno)\n"
             "time.sleep(0.3)\n")
    PROBE = ("import errno, socket\n"
             "def try_(f):\n"
             "    try: f(); return 0\n"
             "    except OSError as e: return errno.errorcode.get(e.errno, e.errno)\n"
             "print('listener=' + str(try_(lambda: socket.create_connection(('127.0.0.1',%(listen)d),timeout=2))))\n"
             "print('abstract=' + str(try_(lambda: socket.socket(socket.AF_UNIX).connect('\\0%(name)s'))))\n"
             "print('tw_port=' + str(try_(lambda: socket.socket().bind(('127.0.0.1',%(tw)d)))))\n"
             "print('tcp_entries=' + str((len(open('/proc/net/tcp').read().splitlines()) - 1)))\n"
             "udp=[l.split() for l in open('/proc/net/snmp') if l.startswith('Udp:')]\n"
             "print('udp_out=' + str(udp[1][udp[0].index('OutDatagrams')]))\n"
             "print('fin_timeout=' + str(open('/proc/sys/net/ipv4/tcp_fin_timeout').read().strip()))\n")

    def test_nothing_a_cell_leaves_in_its_network_reaches_the_next(self):
        args = {"listen": 40000 + os.getpid() % 1000, "tw": 41000 + os.getpid() % 1000,
                "name": marker("ns"), "dgrams": 4321}
        first = self.ran(self.cell_on_slot0(["/usr/bin/python3", "-c", self.LEAVE % args]))
        self.assertEqual(first.kv.get("tw"), "1", "the first cell left no TIME_WAIT connection: %r" % first)
        self.assertNotIn("sysctl written", first.out, first)
        r = self.ran(self.cell_on_slot0(["/usr/bin/python3", "-c", self.PROBE % args]))
        self.assertEqual(r.kv.get("listener"), "ECONNREFUSED", r)
        self.assertEqual(r.kv.get("abstract"), "ECONNREFUSED", r)
        self.assertEqual(r.kv.get("tw_port"), "0", "the first cell's TIME_WAIT port is still taken: %r" % r)
        self.assertEqual(r.kv.get("tcp_entries"), "0", r)
        self.assertEqual(r.kv.get("udp_out"), "0", "the first cell's datagrams are counted here: %r" % r)
        self.assertNotEqual(r.kv.get("fin_timeout"), "7", r)
