#!/bin/bash
# envcheck as a Slurm Prolog: refuse to start a job on a node that fails `envcheck doctor`.
#
# slurm.conf:
#   Prolog=/etc/slurm/envcheck-prolog.sh
#   PrologFlags=Alloc                                   # check once, when the job is allocated
#   SchedulerParameters=nohold_on_prolog_fail           # requeue the job elsewhere, not held
#
# Slurm drains the node when a Prolog exits non-zero, and requeues the job held unless
# nohold_on_prolog_fail is set (slurm.conf, https://slurm.schedmd.com/prolog_epilog.html).
# So the exit code must be exactly 0 on a healthy node, and warnings must not become non-zero:
# --exit-codes binary gives 0 (no problem, warnings allowed) or 1 (an error finding, or envcheck
# could not run: fail closed). The Prolog "is expected to complete execution quickly (in less
# time than MessageTimeout)", so this runs `doctor --scope node`: the node alone (driver, GPUs,
# NVML health, host) in about a second, without starting a Python interpreter or judging one -
# the job brings its own environment, and envcheck's own venv (without torch, as the README
# installs it) must never drain a node. The drain reason Slurm sets does not say why; the
# one-line verdict is in the log below and in syslog.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
envcheck="${ENVCHECK:-/opt/envcheck/bin/envcheck}"
log="${ENVCHECK_LOG:-/var/log/envcheck-prolog.log}"

report=$(timeout -k 2 20 "$envcheck" doctor --scope node --exit-codes binary 2>>"$log")
rc=$?
summary=$(printf '%s\n' "$report" | tail -n 1)
echo "$(date -Is) job=${SLURM_JOB_ID:-?} node=${SLURMD_NODENAME:-$(hostname -s)} rc=$rc $summary" >>"$log"
if [ "$rc" -ne 0 ]; then
  logger -t envcheck-prolog "job ${SLURM_JOB_ID:-?}: node failed envcheck doctor (rc=$rc): $summary" || true
  exit 1
fi
exit 0
