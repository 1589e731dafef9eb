# probe: the project's own bare-metal probe guest (PROBE_ELF at build time).
# Passes when the VMM exits 0; the probe's serial output is passed through.
. /rig/lib.sh
if [ ! -f /guest/probe.elf ]; then
  echo "RIG check=fail no /guest/probe.elf (build the rig initramfs with PROBE_ELF=...)"
  exit 1
fi
rig_vmm_run --kernel /guest/probe.elf --cpus 2 --memory 256M --serial stdio >/tmp/probe.out
cat /tmp/probe.out
# Under hardware-style KVM the probe must report both vCPUs and finish ok.
if [ "$RIG_VMM_RC" = 0 ] && grep -q "PROBE cpus online=2" /tmp/probe.out &&
   grep -q "PROBE done ok" /tmp/probe.out; then
  echo "RIG check=ok"
else
  echo "RIG check=fail vmm exit=$RIG_VMM_RC, probe report incomplete"
fi
exit "$RIG_VMM_RC"
