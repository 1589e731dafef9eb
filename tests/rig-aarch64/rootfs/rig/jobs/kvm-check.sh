# kvm-check: /dev/kvm is there (KVM came up at EL2) and answers: prints what
# the kernel said about KVM and the CPU features the guest kernels will see.
. /rig/lib.sh; . /rig/lib-aarch64.sh
[ -c /dev/kvm ] || { echo "RIG check=fail no /dev/kvm"; exit 1; }
dmesg | grep -iE 'kvm|gic' | head -n 12
echo "RIG cpu features: $(grep -m1 Features /proc/cpuinfo | cut -d: -f2)"
echo "RIG check=ok /dev/kvm $(ls -l /dev/kvm | awk '{ print $5 $6 }')"
