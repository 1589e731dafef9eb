# kvm-check: show that the nested /dev/kvm is usable (no VMM needed).
# Passes when /dev/kvm is a character device and kvm_amd (or kvm_intel) is
# loaded with nested paging; prints the module parameters that matter.
. /rig/lib.sh
rc=0
ls -l /dev/kvm
[ -c /dev/kvm ] || { echo "RIG check=fail /dev/kvm is not a character device"; rc=1; }
for m in kvm_amd kvm_intel; do
  [ -d /sys/module/$m/parameters ] || continue
  for p in nested npt ept avic vgif; do
    [ -r /sys/module/$m/parameters/$p ] && echo "RIG $m.$p=$(cat /sys/module/$m/parameters/$p)"
  done
  # All the others on one line, for the record.
  echo "RIG $m params: $(cd /sys/module/$m/parameters && for p in *; do printf '%s=%s ' "$p" "$(cat "$p" 2>/dev/null)"; done)"
done
for f in svm npt nrip_save vgif vmcb_clean lbrv pausefilter; do
  grep -qw "$f" /proc/cpuinfo && echo "RIG cpu_flag=$f" || echo "RIG cpu_flag=$f absent"
done
npt=$(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null)
case $npt in
  Y|1) ;;
  *) echo "RIG check=fail kvm_amd.npt='$npt' (want Y: shadow paging under TCG is very slow)"; rc=1 ;;
esac
[ $rc = 0 ] && echo "RIG check=ok"
exit $rc
