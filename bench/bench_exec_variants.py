#!/usr/bin/env python3
"""bench_exec_variants: where a cell's start-up time goes. Times `agentbox exec -- /bin/true` as root
and as nobody (no cgroups), with and without a network namespace (--policy permissive --network host),
next to bubblewrap with and without one, interleaved (10 warm-up + 100 timed rounds). Run as root.
usage: bench_exec_variants.py [AGENTBOX]"""
import os
import statistics
import subprocess
import sys
import time

A = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "agentbox"))
BW=["bwrap","--unshare-all","--die-with-parent","--new-session","--ro-bind","/","/","--dev","/dev","--proc","/proc","--tmpfs","/tmp","--cap-drop","ALL","/bin/true"]
BWNONET=["bwrap","--unshare-user","--unshare-ipc","--unshare-pid","--unshare-uts","--unshare-cgroup-try","--die-with-parent","--new-session","--ro-bind","/","/","--dev","/dev","--proc","/proc","--tmpfs","/tmp","--cap-drop","ALL","/bin/true"]
V=[("root  default",[A,"exec","--","/bin/true"],None),
   ("root  permissive, --network host",[A,"exec","--policy","permissive","--network","host","--","/bin/true"],None),
   ("nobody default (no cgroups)",[A,"exec","--","/bin/true"],65534),
   ("nobody permissive, --network host",[A,"exec","--policy","permissive","--network","host","--","/bin/true"],65534),
   ("root  bwrap --unshare-all",BW,None),
   ("root  bwrap without netns",BWNONET,None),
   ("root  /bin/true",["/bin/true"],None)]
T={v[0]:[] for v in V}
for i in range(110):
    for name,argv,u in V:
        t=time.perf_counter(); r=subprocess.run(argv,user=u,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL); d=time.perf_counter()-t
        assert r.returncode==0,(name,r)
        if i>=10: T[name].append(d)
for n,t in T.items(): print("%-36s median %6.2f ms   min %6.2f ms"%(n,statistics.median(t)*1e3,min(t)*1e3))
