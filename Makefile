# vireo build. `make` builds the monitor; `make demo` and `make test` are the
# two commands in the README. Run `make help` for the rest.

CC      ?= gcc
BUILD   ?= build
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.1.0)

WARNINGS := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-unused-parameter
CFLAGS   ?= -O2 -g
ALL_CFLAGS := -std=gnu17 $(WARNINGS) $(CFLAGS) -D_GNU_SOURCE -DVIREO_VERSION='"$(VERSION)"' \
              -fstack-protector-strong -D_FORTIFY_SOURCE=2 -pthread -MMD -MP
LDFLAGS  ?=
LDLIBS   := -pthread -luring -ljansson

LIB_SRCS := lib/err.c lib/log.c lib/util.c
VMM_SRCS := vmm/bus.c vmm/console.c vmm/cpuid.c vmm/event_loop.c vmm/instance.c vmm/machine.c \
            vmm/memory.c vmm/metrics.c vmm/ratelimit.c vmm/vcpu.c vmm/vm.c \
            vmm/boot/acpi.c vmm/boot/aml.c vmm/boot/boot.c vmm/boot/bzimage.c vmm/boot/e820.c \
            vmm/boot/elf.c vmm/boot/smbios.c vmm/boot/x86.c \
            vmm/devices/acpi_pm.c vmm/devices/i8042.c vmm/devices/pci_host.c \
            vmm/devices/serial.c \
            $(sort $(wildcard vmm/virtio/*.c vmm/backends/*.c)) \
            $(sort $(wildcard vmm/mmds/*.c)) \
            $(sort $(wildcard api/*.c))
MAIN_SRC := vmm/main.c

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
VMM_OBJS := $(VMM_SRCS:%.c=$(BUILD)/%.o)
VMM_BIN  := $(BUILD)/vireo-vmm

UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(wildcard tests/unit/test_*.c))
PAYLOADS   := $(patsubst tests/payloads/%.S,$(BUILD)/payloads/%.elf,$(wildcard tests/payloads/*.S))

.PHONY: all vmm unit-tests payloads clean deps guest guest-kernel rootfs sandbox demo test \
        test-unit test-payloads test-e2e test-asan test-clang test-fuzz test-rootfs fuzz bench \
        bench-io format format-check help

all: vmm

help:
	@echo "make            build $(VMM_BIN)"
	@echo "make demo       install dependencies, build, prepare the default guest and boot it"
	@echo "make test       run every test tier (gcc, clang, ASan+UBSan, payloads, e2e, fuzz)"
	@echo "make guest      build the default guest (Debian cloud kernel + busybox initramfs)"
	@echo "make guest-kernel  build the optional minimal guest kernel (4-12 minutes)"
	@echo "make rootfs     build the Debian 12 root-disk guest (ext4 image + initramfs; root, about 1 minute)"
	@echo "make test-rootfs   test the root-disk guest's command-line and ip= parsing on the host"
	@echo "make bench      run the benchmarks (results in docs/performance.md)"
	@echo "make bench-io   only the I/O benchmarks, fio and iperf3 against QEMU (about 15 minutes)"
	@echo "make deps       install build and test dependencies with apt-get"
	@echo "make format     reformat the C sources with clang-format"

vmm: $(VMM_BIN)

$(VMM_BIN): $(VMM_OBJS) $(LIB_OBJS) $(BUILD)/vmm/main.o
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# --- tier 1: unit tests (no KVM) ---------------------------------------------------------
$(BUILD)/tests/unit/%: tests/unit/%.c tests/unit/unit.h $(VMM_OBJS) $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(VMM_OBJS) $(LIB_OBJS) $(LDLIBS)

unit-tests: $(UNIT_TESTS)

test-unit: unit-tests
	tests/run-unit $(UNIT_TESTS)

# --- tier 2: tiny guests the project assembles -------------------------------------------
$(BUILD)/payloads/%.elf: tests/payloads/%.S tests/payloads/payload.ld tests/payloads/payload.h
	@mkdir -p $(dir $@)
	$(CC) -m32 -c -nostdlib -o $(@:.elf=.o) $<
	ld -m elf_i386 -T tests/payloads/payload.ld -o $@ $(@:.elf=.o)

# Payloads in freestanding C: tests/payloads/NAME.c linked with every tests/payloads/runtime/*.c.
# Fixed flags, not $(CFLAGS): sanitizer and host options do not apply to a bare-metal guest.
C_PAYLOADS := $(patsubst tests/payloads/%.c,$(BUILD)/payloads/%.elf,$(wildcard tests/payloads/*.c))
PAYLOAD_RUNTIME := $(patsubst tests/payloads/runtime/%.c,$(BUILD)/payloads/runtime/%.o,\
                     $(wildcard tests/payloads/runtime/*.c))
PAYLOAD_CFLAGS := -std=gnu17 $(WARNINGS) -m32 -ffreestanding -fno-pic -fno-stack-protector \
                  -nostdlib -O2 -mgeneral-regs-only -fno-asynchronous-unwind-tables
$(BUILD)/payloads/%.o: tests/payloads/%.c $(wildcard tests/payloads/runtime/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(PAYLOAD_CFLAGS) -c -o $@ $<
$(BUILD)/payloads/%.elf: $(BUILD)/payloads/%.o $(PAYLOAD_RUNTIME) tests/payloads/payload.ld
	ld -m elf_i386 -T tests/payloads/payload.ld -o $@ $< $(PAYLOAD_RUNTIME)

.SECONDARY: $(PAYLOAD_RUNTIME) $(C_PAYLOADS:.elf=.o)

payloads: $(PAYLOADS) $(C_PAYLOADS)

test-payloads: vmm payloads
	VIREO_BUILD=$(BUILD) tests/payloads/run

# --- tier 3: real Linux guests (in the sandbox where the host lacks VMX/SVM) --------------
test-e2e: vmm guest rootfs
	VIREO_BUILD=$(BUILD) tests/e2e/run

# --- sanitizers, second compiler, fuzzing -------------------------------------------------
test-asan:
	$(MAKE) --no-print-directory BUILD=build-asan CC=clang \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=address,undefined" test-unit test-payloads

test-clang:
	$(MAKE) --no-print-directory BUILD=build-clang CC=clang vmm unit-tests

FUZZ_TARGETS := $(patsubst fuzz/%.c,build-fuzz/%,$(wildcard fuzz/fuzz_*.c))
build-fuzz/%: fuzz/%.c $(VMM_SRCS) $(LIB_SRCS)
	@mkdir -p build-fuzz
	clang -std=gnu17 -g -O1 -D_GNU_SOURCE -pthread -fsanitize=fuzzer,address,undefined \
	  -o $@ $< $(VMM_SRCS) $(LIB_SRCS) $(LDLIBS)

fuzz: $(FUZZ_TARGETS)

test-fuzz: fuzz
	tests/run-fuzz $(FUZZ_TARGETS)

# Every tier in order, with one total line at the end (tests/run-all).
test: deps
	tests/run-all

# --- guests, sandbox, demo, benchmarks ----------------------------------------------------
deps:
	@scripts/install-deps

guest:
	@guest/build-default >/dev/null

guest-kernel: deps
	guest/build-kernel

rootfs: deps
	@guest/build-rootfs >/dev/null

test-rootfs:
	tests/rootfs/run

sandbox:
	tests/sandbox/run --prepare

demo: deps
	$(MAKE) --no-print-directory vmm
	$(MAKE) --no-print-directory guest
	scripts/demo

BENCH_TOOLS := $(BUILD)/bench/firstrun.so $(BUILD)/bench/stamp-exec
$(BUILD)/bench/firstrun.so: bench/firstrun.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu17 $(WARNINGS) -O2 -shared -fPIC -o $@ $< -ldl
$(BUILD)/bench/stamp-exec: bench/stamp-exec.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu17 $(WARNINGS) -O2 -o $@ $<

bench: vmm guest $(BENCH_TOOLS)
	bench/run
	$(MAKE) --no-print-directory bench-io

# Appends its section to build/bench/report.md, which bench/run rewrites.
bench-io: vmm rootfs
	VIREO_BUILD=$(BUILD) bench/io

# C sources only; tests/payloads/payload.h holds assembler macros.
FORMAT_FILES = $$(git ls-files '*.c' '*.h' | grep -v '^tests/payloads/payload\.h$$')
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf build build-clang build-asan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
