#!/usr/bin/env bash
# Boot a Vireo image in QEMU with the node's console on this terminal and
# the agent's port forwarded to the host (`make run`).
#
#   image/run-image.sh ISO
#
# KVM when this host's /dev/kvm can run Linux (hardware virtualization);
# else TCG with -cpu max, which emulates AMD-V, so the node still has KVM.
# A PVM /dev/kvm (software KVM, module kvm_pvm) cannot run a Linux kernel.
#
# Environment: VIREO_PORT (host port for the agent, default 8006),
# RUN_MEMORY (2048 MiB), RUN_CPUS (2).
set -euo pipefail

[[ $# -eq 1 && -s $1 ]] || { echo "usage: $0 ISO" >&2; exit 2; }
iso=$1
port=${VIREO_PORT:-8006}
url=http://127.0.0.1:$port

if [[ -w /dev/kvm && ! -d /sys/module/kvm_pvm ]]; then
  accel=(-accel kvm -cpu host)
  how="KVM"
else
  accel=(-accel tcg -cpu max)
  how="TCG (no hardware KVM here$([[ -d /sys/module/kvm_pvm ]] && echo ": /dev/kvm is PVM"); the node boots in about 25 s)"
fi
if curl -s -o /dev/null --max-time 1 "$url/"; then
  echo "run-image: something already answers on $url (set VIREO_PORT)" >&2
  exit 1
fi

# The CLI this build made (static, beside the image's binaries), run on
# this host against the node's forwarded port.
cli=$(cd "$(dirname "$0")/.." && pwd)/target/x86_64-unknown-linux-musl/release/vireo
[[ -x $cli ]] || cli=vireo
# The demo guest every image carries: the probe (docs/probe.md), ticking.
demo="$cli vm define demo --host 127.0.0.1:$port --kernel /usr/lib/vireo/probe.elf --cmdline probe.tick --memory 64M --start --console"

cat <<EOF2
== Vireo node: $(basename "$iso") under QEMU $how
== agent: $url/node   (vireo node info --host 127.0.0.1:$port)
== log in first (user admin; the password is on the node's console at its first start):
==   $cli login --host 127.0.0.1:$port
== a VM on it, created, started and its console opened (Ctrl-] detaches), from another terminal:
==   $demo
== console below; quit QEMU with Ctrl-A X; the ACPI power button: Ctrl-A C, then system_powerdown
EOF2

# Says on the console when the agent first answers.
(
  for _ in $(seq 1 1200); do
    if curl -sf --max-time 1 "$url/health" >/dev/null 2>&1; then
      printf '\r\n== vireo: the agent answers at %s/node\r\n' "$url"
      printf '== a demo VM (from another terminal): %s\r\n' "$demo"
      exit 0
    fi
    sleep 0.5
  done
) &
waiter=$!
trap 'kill $waiter 2>/dev/null || true' EXIT

qemu-system-x86_64 -machine q35 "${accel[@]}" -m "${RUN_MEMORY:-2048}" -smp "${RUN_CPUS:-2}" \
  -cdrom "$iso" -nic "user,hostfwd=tcp:127.0.0.1:$port-:8006" \
  -display none -serial mon:stdio
