"""systemd socket activation: `agentbox serve` takes an inherited listening socket (LISTEN_PID,
LISTEN_FDS, fd 3) instead of binding its own, serves tasks on it, refuses an fd that is not a
listening Unix socket, and leaves the socket file (systemd's) in place when it exits."""
import os
import signal
import socket
import subprocess
import time
import unittest

from servetest_util import AGENTBOX, Conn, ServeTestCase, finish_reply


class SocketActivation(ServeTestCase):
    def spawn(self, fd, extra_args=()):
        extra_args = ("--replay", self.write_replay([finish_reply("activated")]), *extra_args)
        # the shell moves the passed socket to fd 3 and sets LISTEN_PID to its own pid,
        # which `exec` hands to agentbox unchanged: what systemd does between fork and exec
        move = f"exec 3<&{fd} {fd}<&-; " if fd != 3 else ""
        script = move + 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"'
        self.log = open(os.path.join(self.tmp, "serve.log"), "ab")
        self.addCleanup(self.log.close)
        self.proc = subprocess.Popen(
            ["sh", "-c", script, AGENTBOX, "serve", "--socket", self.sock, "--state-dir",
             self.state, *extra_args], env=self.env(), pass_fds=(fd,), stdout=self.log,
            stderr=subprocess.STDOUT)
        self.addCleanup(self.kill_server)
        return self.proc

    def test_serves_on_the_inherited_socket(self):
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(self.sock)
        lsock.listen(16)
        inode = os.stat(self.sock).st_ino
        self.spawn(lsock.fileno())
        lsock.close()  # only the server holds it now
        c = Conn(self.sock, timeout=20)
        health = c.ask({"op": "health"})
        self.assertTrue(health.get("ok"), health)
        tid = c.ask({"op": "submit", "task": {"prompt": "go"}})["id"]
        res = c.ask({"op": "wait", "id": tid, "timeout_s": 60})
        self.assertEqual(res["result"]["status"], "succeeded", res)
        self.assertEqual(res["result"]["output"], "activated")
        c.close()
        # the socket is the one we made, never re-bound
        self.assertEqual(os.stat(self.sock).st_ino, inode)
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(30), 0, self.server_log())
        self.assertTrue(os.path.exists(self.sock), "systemd's socket file must stay")

    def test_refuses_an_fd_that_is_not_a_listening_socket(self):
        r, w = os.pipe()
        try:
            self.spawn(r)
            rc = self.proc.wait(20)
        finally:
            os.close(r)
            os.close(w)
        self.assertNotEqual(rc, 0)
        self.assertIn("socket activation", self.server_log())
        self.assertFalse(os.path.exists(self.sock))


if __name__ == "__main__":
    unittest.main()
