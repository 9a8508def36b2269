#!/bin/bash
# Run the README's two set-up commands, exactly as written there, in a fresh Debian 12 root.
#
# Proves that a new user on a PEP 668 system Python (Debian 12 / Ubuntu 23.04+: "pip install"
# outside a venv is refused with externally-managed-environment), with no GPU, can
#   1. install envcheck and run `envcheck doctor`  (README "Set-up"), and
#   2. install the test tools and run the tests    (README "Run the tests").
# The two command lines are read from README.md, so the check follows the README as it is.
# Timings of both commands are printed at the end and written to the log.
#
# Slow (a debootstrap, a torch download, the whole test suite): run by hand, not by pytest.
# tests/test_setup_docs.py only checks that this script exists and that README.md and .ci/run
# share the test command.
#
#   sudo scripts/fresh_debian_check.sh [--base DIR] [--work DIR] [--torch-wheels DIR] [--keep]
#
#   --base DIR          a pristine debootstrapped bookworm root, copied for each run (made with
#                       `debootstrap bookworm DIR http://deb.debian.org/debian` when missing)
#   --work DIR          where the run's root is made (default: a new folder under /tmp)
#   --torch-wheels DIR  a folder of wheels pip may also use (PIP_FIND_LINKS inside the root): for
#                       a machine that cannot reach download.pytorch.org but has the CPU wheel
#                       on disk. Default: /opt/wheels when download.pytorch.org does not resolve
#                       and that folder holds a torch wheel; otherwise none (the real index).
#   --keep              leave the run's root in place (default: removed at the end)
#
# Needs root (debootstrap, chroot, mounts) and the network (deb.debian.org, PyPI).
# The README's prerequisites are installed as it says: python3-venv before the first command,
# g++ and python3-dev (for the torch.compile tests) before the second; their time is not in the
# timings.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
base=/var/tmp/envcheck-bookworm-base
work=""
wheels=""
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --torch-wheels) wheels=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "needs root (debootstrap, chroot, mount)" >&2; exit 2; }

doctor_cmd=$(grep -m1 '^python3 -m venv ~/.venvs/envcheck ' "$repo/README.md") ||
  { echo "README.md has no 'python3 -m venv ~/.venvs/envcheck ...' line" >&2; exit 1; }
test_cmd=$(grep -m1 '^python3 -m venv .venv ' "$repo/README.md") ||
  { echo "README.md has no 'python3 -m venv .venv ...' line" >&2; exit 1; }

if [ ! -x "$base/bin/bash" ]; then
  command -v debootstrap >/dev/null || apt-get install -y debootstrap
  echo "== debootstrap bookworm into $base (minutes)"
  debootstrap bookworm "$base" http://deb.debian.org/debian >/dev/null
fi
if [ -z "$wheels" ] && ! getent hosts download.pytorch.org >/dev/null 2>&1 &&
   compgen -G "/opt/wheels/torch-*.whl" >/dev/null; then
  wheels=/opt/wheels
  echo "== download.pytorch.org does not resolve here: pip may also take wheels from $wheels"
fi

work=${work:-$(mktemp -d /tmp/envcheck-fresh.XXXXXX)}
mkdir -p "$work"
root="$work/root"
log="$work/fresh_debian_check.log"
mounted=()
cleanup() {
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  # Never delete through a mount that is still there (/dev is bound into the root).
  if awk -v r="$root/" 'index($2, r) == 1 {found=1} END {exit !found}' /proc/mounts; then
    echo "mounts remain under $root: not removing it" >&2
  elif [ "$keep" -eq 0 ]; then
    rm -rf "$root"
  fi
}
trap cleanup EXIT
echo "== fresh root $root (copy of $base); log $log" | tee "$log"
rm -rf "$root"
cp -a "$base" "$root"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The Debian installer puts the machine's name in /etc/hosts (127.0.1.1); debootstrap does not,
# and a hostname that does not resolve fails gloo's rendezvous in the distributed tests.
printf '127.0.1.1\t%s\n' "$(hostname)" >>"$root/etc/hosts"
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount --bind /dev "$root/dev" && mounted+=("$root/dev")
mount --bind /sys "$root/sys" && mounted+=("$root/sys")
mount --bind /dev/pts "$root/dev/pts" && mounted+=("$root/dev/pts")
mount --bind /dev/shm "$root/dev/shm" && mounted+=("$root/dev/shm")
# A machine behind a TLS-intercepting proxy: pip inside the root trusts what pip here trusts.
cert=${PIP_CERT:-$(pip config get global.cert 2>/dev/null || true)}
if [ -n "$cert" ] && [ -f "$cert" ]; then
  cp "$cert" "$root/etc/host-ca-bundle.crt"
  echo "== pip inside the root uses this machine's CA bundle ($cert)"
fi
if [ -n "$wheels" ]; then
  mkdir -p "$root/opt/local-wheels"
  mount --bind -o ro "$wheels" "$root/opt/local-wheels" && mounted+=("$root/opt/local-wheels")
fi

# The repository as a clone would have it: tracked and untracked-but-not-ignored files.
mkdir -p "$root/root/envcheck"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
   while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
   tar --null -T - -cf -) | tar -xf - -C "$root/root/envcheck"

cat >"$root/root/run.sh" <<EOF
#!/bin/bash
set -u
export HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive
${wheels:+export PIP_FIND_LINKS=/opt/local-wheels}
# Debian's pip 23.0.1 (python3-venv) ignores --cert/PIP_CERT but its debundled requests reads
# REQUESTS_CA_BUNDLE.
[ -f /etc/host-ca-bundle.crt ] && export PIP_CERT=/etc/host-ca-bundle.crt REQUESTS_CA_BUNDLE=/etc/host-ca-bundle.crt
cd /root/envcheck
echo "== README prerequisite (as root, so without sudo): apt-get install python3-venv"
apt-get update -qq >/dev/null && apt-get install -y -qq python3-venv >/dev/null || exit 10
echo "== \$(python3 --version) at \$(command -v python3); PEP 668 marker:" \
  \$(ls /usr/lib/python3*/EXTERNALLY-MANAGED 2>/dev/null || echo none)
t0=\$(date +%s)
echo "== README set-up command: $doctor_cmd"
( $doctor_cmd )
rc1=\$?
t1=\$(date +%s)
echo "== README prerequisite of the tests: apt-get install g++ python3-dev"
apt-get install -y -qq g++ python3-dev >/dev/null || exit 11
t1b=\$(date +%s)
echo "== README test command: $test_cmd"
( $test_cmd )
rc2=\$?
t2=\$(date +%s)
echo "== timings: set-up+doctor \$((t1 - t0)) s (rc \$rc1), test set-up+tests \$((t2 - t1b)) s (rc \$rc2)"
# doctor exits 1 when it finds an error (on a fresh root: no torch for python3) - a verdict, not a failure.
[ "\$rc1" -le 1 ] && [ "\$rc2" -eq 0 ]
EOF
chmod +x "$root/root/run.sh"
set +e
# Started in the background of a non-interactive shell (`... &`, nohup, some CI runners), this
# script has SIGINT ignored, and every child would inherit that (POSIX: ignored signals stay
# ignored across exec; bash cannot reset them). The validate tests interrupt a run with SIGINT:
# give the root's processes the default disposition back.
sigdfl=(python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])')
command -v python3 >/dev/null || sigdfl=()
"${sigdfl[@]}" chroot "$root" /root/run.sh 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
set -e
echo "== fresh Debian 12 check: $([ "$rc" -eq 0 ] && echo PASSED || echo "FAILED (rc $rc)"); log: $log"
exit "$rc"
