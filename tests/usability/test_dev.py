"""Usability suite: ordinary development work inside /workspace of a cell, through the real
`agentbox exec`, with the default policy and limits: C with gcc, python3, git, make, tar,
shell pipelines, seeding from a host directory (left untouched) and a moderate parallel build."""
import os
import unittest

from cellcheck import CellTest, tree_digest

MAKEFILE = """CFLAGS = -O1 -Wall
OBJS = $(patsubst %.c,%.o,$(wildcard m*.c))
app: main.o $(OBJS)
\t$(CC) -o $@ $^
clean:
\trm -f app *.o
"""


class DevWork(CellTest):
    def sh(self, script, **kw):
        r = self.cell(["/bin/sh", "-c", "cd /workspace && " + script], **kw)
        self.assertEqual(r.rc, 0, r)
        return r

    def test_gcc_compile_and_run(self):
        seed = self.seed(files={"hello.c": '#include <stdio.h>\nint main(void){printf("hello %d\\n", 6*7);return 0;}\n'})
        r = self.sh("gcc -O2 -Wall -o hello hello.c && ./hello", seed=seed)
        self.assertIn("hello 42", r.out)

    def test_python3(self):
        r = self.sh("printf 'import json,sys\\nprint(json.dumps({\"sum\": sum(range(10))}))\\n' > t.py && python3 t.py")
        self.assertIn('{"sum": 45}', r.out)

    def test_git_init_add_commit(self):
        r = self.sh("git init -q repo && cd repo && echo one > a.txt && git add a.txt &&"
                    " git -c user.name=t -c user.email=t@example.com commit -q -m first &&"
                    " echo two >> a.txt && git -c user.name=t -c user.email=t@example.com commit -q -am second &&"
                    " git log --oneline | wc -l && git diff HEAD~1 --stat")
        self.assertEqual(r.out.split()[0], "2", r)
        self.assertIn("a.txt", r.out)

    def test_make(self):
        files = {"Makefile": MAKEFILE, "main.c": "int m1(void);\nint main(void){return m1()-1;}\n",
                 "m1.c": "int m1(void){return 1;}\n"}
        r = self.sh("make -s && ./app && echo built-ok && make -s clean && ls", seed=self.seed(files=files))
        self.assertIn("built-ok", r.out)
        self.assertNotIn("main.o", r.out)

    def test_tar_roundtrip(self):
        r = self.sh("mkdir -p d/e && echo x > d/e/f && tar czf a.tgz d && rm -rf d && tar xzf a.tgz &&"
                    " cat d/e/f && tar tzf a.tgz | sort")
        self.assertIn("d/e/f", r.out)

    def test_pipelines(self):
        r = self.sh("printf 'b\\na\\nb\\nc\\nb\\n' | sort | uniq -c | sort -rn | head -1 | awk '{print $1, $2}';"
                    " seq 1 1000 | grep 7 | wc -l")
        self.assertEqual(r.out.split(), ["3", "b", "271"])

    def test_seed_from_host_dir_untouched(self):
        seed = self.seed(files={"src/a.py": "print('from seed')\n", "README": "seed\n"})
        digest = tree_digest(seed)
        r = self.sh("python3 src/a.py && echo more >> README && rm src/a.py && touch new && ls", seed=seed)
        self.assertIn("from seed", r.out)
        self.assertEqual(tree_digest(seed), digest, "the host seed directory changed")

    def test_moderate_build_within_default_limits(self):
        files = {"Makefile": MAKEFILE, "main.c": "#include <stdio.h>\n" + "".join(
            "int m%d(void);\n" % i for i in range(40)) + "int main(void){int s=0;" + "".join(
            "s+=m%d();" % i for i in range(40)) + "printf(\"%d\\n\", s);return 0;}\n"}
        for i in range(40):
            files["m%d.c" % i] = "#include <string.h>\n#include <stdlib.h>\nint m%d(void){char b[64];" \
                                 "memset(b, %d, sizeof b);return b[3] > 0 ? 1 : 0;}\n" % (i, i + 1)
        r = self.sh("make -s -j4 && ./app", seed=self.seed(files=files), timeout=240)
        self.assertEqual(r.out.split()[-1], "40", r)


if __name__ == "__main__":
    unittest.main()
