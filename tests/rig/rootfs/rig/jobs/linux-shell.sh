# linux-shell: the minimal guest with an interactive shell on the console
# (`make run-vm GUEST=linux` on a host whose own /dev/kvm cannot run Linux).
# The console is the rig's, so what you type reaches the guest's shell.
. /rig/lib.sh
echo "RIG vmm: $VMM (interactive; type exit to leave the guest)"
$VMM --kernel /guest/vmlinux --initrd /guest/initramfs.cpio.gz \
  --cmdline "console=ttyS0 reboot=k panic=-1 quiet vireo.shell" --cpus 2 --memory 512M --serial stdio
