# agentbox build. `make` builds ./agentbox; `make check` runs every test (see README).
# Sources are picked up by directory, so adding a module needs no edit here.

CC      ?= gcc
PYTHON  ?= /usr/bin/python3
PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build

PKGS       := libcjson libseccomp libcap
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) libcurl 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# libcurl is not linked: it is dlopen'ed on first HTTP use (executor/curl_dl.c), because
# linking it costs every process ~4 ms of start-up (DESIGN.md section 8) and `exec` must be fast.
CFLAGS_BASE := -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wformat=2 \
               -Wno-missing-field-initializers -fno-strict-aliasing -g \
               -Icommon -Isandbox -Iexecutor $(PKG_CFLAGS)
CFLAGS  ?= -O2
LDLIBS  := $(PKG_LIBS) -ldl -lm

SAN_FLAGS := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

SRCS      := $(sort $(wildcard common/*.c sandbox/*.c executor/*.c))
LIB_SRCS  := $(filter-out executor/main.c,$(SRCS))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))

OBJS      := $(SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
SAN_OBJS  := $(SRCS:%.c=$(BUILD)/san/%.o)
SAN_LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/san/%.o)
UNITS     := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
SAN_UNITS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/san/tests/%)
HELPERS   := $(patsubst tests/helpers/%.c,$(BUILD)/helpers/%,$(wildcard tests/helpers/*.c))

.PHONY: all san units helpers check check-units check-san check-integration format format-check \
        lint deps install uninstall bench demo clean

all: agentbox

agentbox: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

agentbox-san: $(SAN_OBJS)
	$(CC) $(SAN_FLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

san: agentbox-san

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(SAN_FLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -Itests/unit -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/san/tests/%: tests/unit/%.c $(SAN_LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(SAN_FLAGS) -Itests/unit -o $@ $^ $(LDLIBS) -lcmocka

# Small attack and probe programs the escape tests run inside cells (static: a cell has
# only the host's /usr, and a static binary does not care).
$(BUILD)/helpers/%: tests/helpers/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -O1 -Wall -Wextra -Werror -static -o $@ $<

units: $(UNITS)
helpers: $(HELPERS)

# The whole test suite: unit tests (plain and ASan+UBSan), then the suites that drive the
# real binary. Prints one closing tally line.
check: agentbox agentbox-san $(UNITS) $(SAN_UNITS) $(HELPERS)
	$(MAKE) --no-print-directory fuzz
	AGENTBOX=$(CURDIR)/agentbox AGENTBOX_SAN=$(CURDIR)/agentbox-san BUILD=$(BUILD) \
	  PYTHON=$(PYTHON) bash tests/run-all.sh

check-units: $(UNITS) $(SAN_UNITS)
	AGENTBOX_DATA_DIR=$(CURDIR) bash tests/run-units.sh $(UNITS) $(SAN_UNITS)

format:
	clang-format -i $(SRCS) $(wildcard */*.h tests/unit/*.c tests/helpers/*.c bench/*.c)

format-check:
	clang-format --dry-run --Werror $(SRCS) $(wildcard */*.h tests/unit/*.c tests/helpers/*.c bench/*.c)

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem -D_GNU_SOURCE -Icommon -Isandbox -Iexecutor \
	  common sandbox executor

deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	  build-essential pkg-config libcurl4-openssl-dev libcjson-dev libseccomp-dev libcap-dev \
	  libcmocka-dev python3 git make tar util-linux iproute2 bubblewrap cppcheck clang-format \
	  python3-pip python3-setuptools python3-wheel python3-venv \
	  libc6-dev ca-certificates clang libclang-rt-14-dev \
	  qemu-system-x86 busybox-static cpio

install: agentbox
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/agentbox/policies \
	  $(DESTDIR)$(PREFIX)/share/agentbox/catalog $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 agentbox $(DESTDIR)$(PREFIX)/bin/agentbox
	install -m 0644 policies/*.json $(DESTDIR)$(PREFIX)/share/agentbox/policies/
	if [ -d catalog ]; then install -m 0644 catalog/*.json $(DESTDIR)$(PREFIX)/share/agentbox/catalog/; fi
	install -m 0644 docs/agentbox.1 $(DESTDIR)$(PREFIX)/share/man/man1/agentbox.1

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/agentbox $(DESTDIR)$(PREFIX)/share/man/man1/agentbox.1
	rm -rf $(DESTDIR)$(PREFIX)/share/agentbox

# The README's main job: a real agent task in a cell. With OPENROUTER_API_KEY it asks a real
# model; without one it replays recorded replies (labelled OFFLINE REPLAY by agentbox itself).
demo: agentbox
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
	  -Icommon -Isandbox -Iexecutor $(PKG_CFLAGS) -o $(BUILD)/fuzz/fuzz_protocol \
	  tests/fuzz/fuzz_protocol.c executor/protocol.c executor/task.c executor/git_workspace.c \
	  executor/gitcmd.c executor/verify_spec.c $(wildcard common/*.c) \
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
