# agentbox build. `make` builds ./agentbox; `make check` runs every test (see README).
# Sources are picked up by directory, so adding a module needs no edit here.

CC      ?= gcc
PYTHON  ?= /usr/bin/python3
PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build

PKGS       := libcjson libseccomp
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) libcurl 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# libcurl is not linked: it is dlopen'ed on first HTTP use (llm/curl_dl.c), because
# linking it costs every process ~4 ms of start-up and `exec` must be fast.
CFLAGS_BASE := -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wformat=2 \
               -Wno-missing-field-initializers -fno-strict-aliasing -g $(PKG_CFLAGS)
CFLAGS  ?= -O2
LDLIBS  := $(PKG_LIBS) -ldl -lm

SAN_FLAGS := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

# The tree by trust and role (docs/architecture.md). Each folder sees the headers of the
# folders listed for it and no others: the compiler enforces the layering. Bottom to top:
# common (shared helpers), sandbox (the cell), wire (what crosses a trust boundary),
# agent/tools and agent (cell pid 1: untrusted, never the key), llm (the one holder of the
# key), supervisor (a task's life), batch, daemon, cli (commands: everything). cli/commands.h
# (the entry points and exit codes) is visible to the folders that define an entry point.
DIRS := common sandbox wire agent/tools agent llm egress supervisor batch daemon cli
INC_common     := common
INC_sandbox    := common sandbox
INC_wire       := common sandbox wire
INC_agent/tools := common agent/tools
INC_agent      := common sandbox wire agent/tools agent cli
INC_llm        := common llm
INC_egress     := common wire egress cli
INC_supervisor := common sandbox wire agent/tools llm egress supervisor
INC_batch      := common sandbox wire batch cli
INC_daemon     := common sandbox wire llm egress supervisor daemon cli
INC_cli        := $(DIRS)
ALL_INC        := $(DIRS:%=-I%)
# Pattern-specific: the longer stem (agent/tools) wins over the shorter (agent).
$(foreach d,$(DIRS),$(eval $(BUILD)/$(d)/%.o $(BUILD)/san/$(d)/%.o: LAYER_INC := $(INC_$(d):%=-I%)))

SRCS      := $(sort $(foreach d,$(DIRS),$(wildcard $(d)/*.c)))
LIB_SRCS  := $(filter-out cli/main.c,$(SRCS))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))

OBJS      := $(SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
SAN_OBJS  := $(SRCS:%.c=$(BUILD)/san/%.o)
SAN_LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/san/%.o)
UNITS     := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
SAN_UNITS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/san/tests/%)
HELPERS   := $(patsubst tests/helpers/%.c,$(BUILD)/helpers/%,$(wildcard tests/helpers/*.c))

.PHONY: all san units helpers layering check check-units check-san check-integration format format-check \
        lint deps install uninstall bench demo clean

all: agentbox

agentbox: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

agentbox-san: $(SAN_OBJS)
	$(CC) $(SAN_FLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

san: agentbox-san

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(LAYER_INC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(LAYER_INC) $(SAN_FLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(ALL_INC) $(CFLAGS) -Itests/unit -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/san/tests/%: tests/unit/%.c $(SAN_LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(ALL_INC) $(SAN_FLAGS) -Itests/unit -o $@ $^ $(LDLIBS) -lcmocka

# Small attack and probe programs the escape tests run inside cells (static: a cell has
# only the host's /usr, and a static binary does not care).
$(BUILD)/helpers/%: tests/helpers/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -O1 -Wall -Wextra -Werror -static -o $@ $<

units: $(UNITS)
helpers: $(HELPERS)

# The layering on the objects: no folder uses a symbol of a folder above it, and the cell side
# (common sandbox wire agent/tools agent) links into a program of its own (tests/layering).
layering: $(OBJS)
	bash tests/layering/check.sh $(BUILD) "$(CC)" "$(LDLIBS)"

# The whole test suite: unit tests (plain and ASan+UBSan), then the suites that drive the
# real binary. Prints one closing tally line.
check: agentbox agentbox-san $(UNITS) $(SAN_UNITS) $(HELPERS)
	$(MAKE) --no-print-directory layering
	$(MAKE) --no-print-directory fuzz
	AGENTBOX=$(CURDIR)/agentbox AGENTBOX_SAN=$(CURDIR)/agentbox-san BUILD=$(BUILD) \
	  PYTHON=$(PYTHON) bash tests/run-all.sh

check-units: $(UNITS) $(SAN_UNITS)
	AGENTBOX_DATA_DIR=$(CURDIR) bash tests/run-units.sh $(UNITS) $(SAN_UNITS)

format:
	clang-format -i $(SRCS) $(wildcard $(DIRS:%=%/*.h) tests/unit/*.c tests/helpers/*.c bench/*.c)

format-check:
	clang-format --dry-run --Werror $(SRCS) $(wildcard $(DIRS:%=%/*.h) tests/unit/*.c tests/helpers/*.c bench/*.c)

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem -D_GNU_SOURCE $(ALL_INC) \
	  $(DIRS)

deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	  build-essential pkg-config libcurl4-openssl-dev libcjson-dev libseccomp-dev \
	  libcmocka-dev python3 git make tar util-linux iproute2 bubblewrap cppcheck clang-format \
	  libc6-dev ca-certificates clang libclang-rt-14-dev python3-pip curl openssl \
	  qemu-system-x86 busybox-static cpio \
	  slurmctld slurmd slurm-client munge python3-yaml systemd \
	  python3-setuptools python3-wheel python3-venv
	# node and npm for the independent OpenAI-compatible mock server of the llm and run suites
	# (tests/mock-npm); Debian's, unless a node with npm is installed already
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm; fi
	cd tests/mock-npm && npm ci --no-audit --no-fund

# Where the Python client goes: the first of PREFIX's site directories this Python reads
# (Debian: PREFIX/lib/python3/dist-packages or PREFIX/lib/python3.X/dist-packages), else the
# standard site-packages below PREFIX.
PYLIBDIR ?= $(shell $(PYTHON) -c 'import sys, sysconfig; v = "%d.%d" % sys.version_info[:2]; \
  c = ["$(PREFIX)/lib/python3/dist-packages", "$(PREFIX)/lib/python" + v + "/dist-packages"]; \
  print(next((p for p in c if p in sys.path), None) or \
        sysconfig.get_path("purelib", "posix_prefix", vars={"base": "$(PREFIX)"}))' 2>/dev/null)
BIN ?= agentbox
DATADIR := $(PREFIX)/share/agentbox
DOCDIR  := $(PREFIX)/share/doc/agentbox
LIBDIR  := $(PREFIX)/lib/agentbox
UNITDIR := $(PREFIX)/lib/systemd/system
# The shipped files name /usr/local (the default PREFIX); installed, they name PREFIX.
AT_PREFIX := sed -e 's|/usr/local/|$(PREFIX)/|g'

# Everything a user of the installed tree needs, below DESTDIR/PREFIX: the binary, its data
# (found as ../share/agentbox from the binary, wherever that is), the man page with this
# PREFIX in its paths, the docs, the systemd units and their wrapper, the Python client.
install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(DATADIR)/policies $(DESTDIR)$(DATADIR)/catalog \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(LIBDIR) \
	  $(DESTDIR)$(UNITDIR) $(DESTDIR)$(PYLIBDIR)/agentbox_client
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/agentbox
	install -m 0644 policies/*.json $(DESTDIR)$(DATADIR)/policies/
	install -m 0644 catalog/*.json $(DESTDIR)$(DATADIR)/catalog/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@PYLIBDIR@|$(PYLIBDIR)|g' docs/agentbox.1.in \
	  > $(DESTDIR)$(PREFIX)/share/man/man1/agentbox.1
	chmod 0644 $(DESTDIR)$(PREFIX)/share/man/man1/agentbox.1
	install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	$(AT_PREFIX) deploy/agentbox-serve > $(DESTDIR)$(LIBDIR)/agentbox-serve
	chmod 0755 $(DESTDIR)$(LIBDIR)/agentbox-serve
	for u in agentbox.service agentbox.socket; do \
	  $(AT_PREFIX) deploy/$$u > $(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -m 0644 clients/python/agentbox_client/*.py $(DESTDIR)$(PYLIBDIR)/agentbox_client/
	install -m 0644 clients/python/README.md $(DESTDIR)$(DOCDIR)/python-client.md

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/agentbox $(DESTDIR)$(PREFIX)/share/man/man1/agentbox.1 \
	  $(DESTDIR)$(UNITDIR)/agentbox.service $(DESTDIR)$(UNITDIR)/agentbox.socket
	rm -rf $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(LIBDIR) \
	  $(DESTDIR)$(PYLIBDIR)/agentbox_client

# The README's main job: a real agent task in a cell. With OPENROUTER_API_KEY it asks a real
# model; without one it replays recorded replies (labelled OFFLINE REPLAY by agentbox itself).
# Building goes to stderr, so that `make demo > result.json` holds the result alone.
demo:
	@$(MAKE) --no-print-directory agentbox >&2
	@if [ -n "$$OPENROUTER_API_KEY" ]; then \
	  ./agentbox run --task-file examples/demo/task.json; \
	else \
	  echo "make demo: OPENROUTER_API_KEY is not set: running the offline replay of examples/demo" >&2; \
	  ./agentbox run --task-file examples/demo/task.json --replay examples/demo/replay.json; \
	fi

# libFuzzer targets (tests/fuzz/fuzz_NAME.c), each run for FUZZ_TIME seconds on a scratch copy
# of its seed corpus; skipped with a note when clang is not installed.
FUZZ_TIME ?= 60
FUZZ_CC   ?= clang
fuzz:
	@if ! command -v $(FUZZ_CC) >/dev/null 2>&1; then echo "fuzz: skipped ($(FUZZ_CC) not installed)"; exit 0; fi; \
	set -e; mkdir -p $(BUILD)/fuzz; \
	$(FUZZ_CC) -g -O1 -std=gnu11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	  $(ALL_INC) $(PKG_CFLAGS) -o $(BUILD)/fuzz/fuzz_protocol \
	  tests/fuzz/fuzz_protocol.c wire/protocol.c wire/task.c wire/task_egress.c sandbox/seed_open.c sandbox/policy_egress.c \
	  wire/git_workspace.c wire/verify_spec.c $(wildcard common/*.c) \
	  $(PKG_LIBS) -lm; \
	rm -rf $(BUILD)/fuzz/corpus && mkdir -p $(BUILD)/fuzz/corpus && cp tests/fuzz/corpus/protocol/* $(BUILD)/fuzz/corpus/; \
	if ! $(BUILD)/fuzz/fuzz_protocol -max_total_time=$(FUZZ_TIME) -max_len=65536 \
	  -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus >$(BUILD)/fuzz/log 2>&1; then \
	  tail -30 $(BUILD)/fuzz/log; echo "fuzz: FAILED (artifacts in $(BUILD)/fuzz/)"; exit 1; fi; \
	tail -1 $(BUILD)/fuzz/log; \
	echo "fuzz: fuzz_protocol ran $(FUZZ_TIME) s without a finding"

bench: agentbox $(HELPERS)
	AGENTBOX=$(CURDIR)/agentbox PYTHON=$(PYTHON) bash bench/run-all.sh

clean:
	rm -rf $(BUILD) agentbox agentbox-san

-include $(OBJS:.o=.d) $(SAN_OBJS:.o=.d)
