# SPDX-License-Identifier: Apache-2.0
# sluice - see README.md. Targets: all (default), demo, test, check, bench, fuzz,
# verify, san, clean. V=1 prints full commands.

BUILD      ?= build
CLANG      ?= clang
CC         ?= cc
BPFTOOL    ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
ARCH       := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
VERSION    := $(shell git describe --always --dirty 2>/dev/null || echo unknown)

BPF_CFLAGS := -O2 -g -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Wextra -Werror \
	      -Wno-unused-parameter -I$(BUILD) -Iinclude -Ibpf
CFLAGS     ?= -O2 -g
# What the code needs, kept apart so `make CFLAGS=...` (san, fuzz) adds to it.
SL_CFLAGS  := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wmissing-prototypes \
	      -Wno-unused-parameter -D_GNU_SOURCE -I/usr/include/libnl3 -I$(BUILD) -Iinclude -Iuser -Iuser/lib \
	      -Iselftests -DSL_VERSION='"$(VERSION)"' -MMD -MP
LDLIBS_AGENT := -lbpf -lelf -lz -lyaml -ljansson -lssl -lcrypto -lnghttp2 -lnl-route-3 -lnl-3 -lhttp_parser
LDLIBS_CLI   := -ljansson

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-5s %s\n' "$(1)" "$(2)";
endif

BPF_PROGS  := sock_lb sockops pod_ingress pod_egress edge
BPF_OBJS   := $(patsubst %,$(BUILD)/%.bpf.o,$(BPF_PROGS))
SKELS      := $(patsubst %,$(BUILD)/%.skel.h,$(BPF_PROGS))

LIB_SRCS   := $(wildcard user/lib/*.c)
# Agent modules without main.c: linked into the agent, the unit tests and fuzzers.
CORE_SRCS  := $(filter-out user/main.c,$(wildcard user/*.c)) $(LIB_SRCS)
CORE_OBJS  := $(patsubst %.c,$(BUILD)/%.o,$(CORE_SRCS))
AGENT      := $(BUILD)/sluice-agent
CLI        := $(BUILD)/sluicectl
CLI_SRCS   := $(wildcard user/cli/*.c)
TOOLS_SRCS := $(wildcard selftests/tools/*.c)
TOOLS      := $(patsubst selftests/tools/%.c,$(BUILD)/%,$(TOOLS_SRCS))
TEST_SRCS  := $(wildcard selftests/unit/*.c selftests/bpf/*.c) $(wildcard selftests/lib/*.c)
TEST_BIN   := $(BUILD)/test_progs

.PHONY: all bpf agent cli tools deps demo test test-unit test-e2e check san bench soak fuzz verify clean \
	format-check lab-down netpol conformance
.DELETE_ON_ERROR:
.SECONDARY:

all: agent cli tools $(TEST_BIN)

deps:
	$(Q)scripts/deps

bpf: $(BPF_OBJS) $(SKELS)
agent: $(AGENT)
cli: $(CLI)
tools: $(TOOLS)

$(BUILD) $(BUILD)/user/lib $(BUILD)/user/cli $(BUILD)/selftests:
	$(Q)mkdir -p $@

# vmlinux.h from the running kernel's BTF; VMLINUX_H=<file> overrides. Rewritten
# only when its content changes, so BPF objects are not rebuilt for nothing.
$(BUILD)/vmlinux.h: | $(BUILD)
	$(call msg,GEN,$@)
	$(Q)if [ -n "$(VMLINUX_H)" ]; then cp "$(VMLINUX_H)" $@.tmp; \
	elif [ -r /sys/kernel/btf/vmlinux ]; then $(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp; \
	else echo "no kernel BTF at /sys/kernel/btf/vmlinux: build on a kernel with CONFIG_DEBUG_INFO_BTF or set VMLINUX_H=<file>" >&2; exit 1; fi
	$(Q)cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp

$(BUILD)/%.bpf.o: bpf/%.bpf.c $(BUILD)/vmlinux.h $(wildcard bpf/lib/*.h include/sluice/*.h) | $(BUILD)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/%.skel.h: $(BUILD)/%.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $* > $@

# Test-only BPF programs (selftests/progs).
$(BUILD)/progs/%.bpf.o: selftests/progs/%.bpf.c $(BUILD)/vmlinux.h $(wildcard bpf/lib/*.h include/sluice/*.h)
	$(Q)mkdir -p $(dir $@)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/progs/%.skel.h: $(BUILD)/progs/%.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $* > $@

$(BUILD)/%.o: %.c $(SKELS)
	$(Q)mkdir -p $(dir $@)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(SL_CFLAGS) -c $< -o $@

$(AGENT): $(BUILD)/user/main.o $(CORE_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $(SL_CFLAGS) $^ -o $@ $(LDLIBS_AGENT)

$(CLI): $(patsubst %.c,$(BUILD)/%.o,$(CLI_SRCS)) $(BUILD)/user/lib/log.o
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $(SL_CFLAGS) $^ -o $@ $(LDLIBS_CLI)

# Test tools link libc only, unless LDLIBS_<tool> names more.
LDLIBS_sl-echo := -lnghttp2 -lcrypto
LDLIBS_sl-h2c  := -lnghttp2 -lssl -lcrypto
LDLIBS_sl-xdpgen := -lbpf -lelf -lz
$(BUILD)/selftests/tools/sl-xdpgen.o: $(BUILD)/progs/xdpgen.skel.h

$(BUILD)/%: $(BUILD)/selftests/tools/%.o
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $(SL_CFLAGS) $^ -o $@ $(LDLIBS_$*)

# Tests are `void test_<area>_<case>(void)`, found by sed into a registry.
$(BUILD)/selftests/registry.h: $(TEST_SRCS) | $(BUILD)/selftests
	$(Q)sed -n 's/^void \(\(serial_\)\{0,1\}test_[a-z0-9_]*\)(void)$$/SL_TEST(\1)/p' $(TEST_SRCS) > $@.tmp
	$(Q)cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp

$(BUILD)/selftests/run.o: $(BUILD)/selftests/registry.h
# test_* functions are found by the registry, not declared in headers.
# What prints the version is rebuilt when `git describe` changes, or a binary
# would report the commit it was first built at.
VERSION_STAMP := $(BUILD)/version.stamp
$(shell mkdir -p $(BUILD); [ "$$(cat $(VERSION_STAMP) 2>/dev/null)" = "$(VERSION)" ] || \
	echo "$(VERSION)" >$(VERSION_STAMP))
$(BUILD)/user/main.o $(BUILD)/user/views.o $(BUILD)/user/cli/sluicectl.o: $(VERSION_STAMP)

$(BUILD)/selftests/%.o: SL_CFLAGS += -Wno-missing-prototypes

$(TEST_BIN): $(patsubst %.c,$(BUILD)/%.o,$(TEST_SRCS) selftests/run.c) $(CORE_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $(SL_CFLAGS) $^ -o $@ $(LDLIBS_AGENT)

# ---- running ----
demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/demo

test: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/test

# NetworkPolicy truth tables in the lab (selftests/netpol/run); CASES=<dir>
# (a case folder or a folder of them), default ../shared/netpol/cases.
netpol: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)selftests/netpol/run $(CASES)

# Gateway API conformance cases in the lab (selftests/conformance/run, see
# docs/conformance.md); CASES=<dir> (a folder of case files, or files),
# default ../shared/conformance/cases. Cases of features the agent does not
# support (sluice-agent features) are skipped. Runs $(BUILD)'s binaries.
conformance: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)SLUICE_BUILD=$(abspath $(BUILD)) selftests/conformance/run $(CASES)

check: deps
	$(Q)scripts/check

bench: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/bench $(BENCH)

# Load with no failed request: 10,000 tunnelled connections held 60 s,
# 100,000 short ones through a VIP, then both agents upgraded under 5,000 +
# 5,000 held connections (scripts/soak; SOAK="--conns N ..." to change).
SOAK ?= --upgrade 5000
soak: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/soak $(SOAK)

fuzz: deps
	$(Q)scripts/fuzz

verify: $(TEST_BIN)
	$(Q)$(TEST_BIN) -v -t verify

# Sanitizer build of the agent and the unit tests into build-san/.
san:
	$(Q)$(MAKE) --no-print-directory BUILD=build-san CC=clang \
		CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		build-san/test_progs build-san/sluice-agent build-san/sluicectl

format-check:
	$(Q)clang-format --dry-run --Werror $(wildcard bpf/*.c bpf/lib/*.h include/sluice/*.h user/*.[ch] user/*/*.[ch])

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
