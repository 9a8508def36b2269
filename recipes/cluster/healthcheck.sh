#!/bin/bash
# envcheck as Slurm's HealthCheckProgram: drain this node when it is unhealthy, resume it when
# it is healthy again - but only if envcheck drained it.
#
# slurm.conf (identical on every node and the controller):
#   HealthCheckProgram=/etc/slurm/envcheck-healthcheck.sh
#   HealthCheckInterval=300
#   HealthCheckNodeState=ANY          # or IDLE / NONDRAINED_IDLE to check only idle nodes
#
# What Slurm does and does not do (slurm.conf man page, HealthCheckProgram): it runs the program
# as root on every node at the same time, kills it after 60 seconds, and takes no action on its
# result - "any action to be taken must be explicitly performed by the program". Hence --drain:
#   * on failure: scontrol update NodeName=<node> State=DRAIN Reason="envcheck: <what failed>";
#   * on success: State=RESUME, only when the reason starts with "envcheck:";
#   * a reason someone else set is never overwritten, DOWN nodes and pending reboots are left
#     alone, and nothing is changed when envcheck itself fails
# - the conventions of LBNL NHC's node-mark-offline / node-mark-online helpers (mej/nhc).
# slurmd starts the program with an almost empty environment (slurm-wlm 22.05.8 here set only
# SLURMD_NODENAME: no PATH), so PATH and the envcheck path are set explicitly.
# The node name comes from SLURMD_NODENAME, else `hostname -s`.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
envcheck="${ENVCHECK:-/opt/envcheck/bin/envcheck}"
log="${ENVCHECK_LOG:-/var/log/envcheck-healthcheck.log}"

case "${ENVCHECK_CHECK:-doctor}" in
  # doctor --scope node: the node alone - driver, GPUs (ECC, row remap, PCIe link, throttling,
  # NVLink), NVML health, host - in about a second. No Python environment is judged and torch is
  # not probed: which torch sits in envcheck's own venv (none, as the README installs it) must
  # never drain a node. A job's Python environment is the job's to check (`envcheck doctor` in
  # the job script); ENVCHECK_CHECK=quick runs a real workload and so needs a torch.
  doctor) args=(doctor --scope node) ;;
  # quick: a short real workload - cnn, all-reduce, GEMM and memory at --profile quick - that
  # ends itself at its 50 s budget (a check still running then fails). 13-16 s on a 2-core CPU.
  quick) args=(validate --quick) ;;
  *) echo "ENVCHECK_CHECK must be doctor or quick" >&2; exit 2 ;;
esac

prom=()
# node_exporter --collector.textfile.directory; the file is replaced atomically.
if [ -d "${ENVCHECK_PROM_DIR:-/var/lib/node_exporter/textfile}" ]; then
  prom=(--prom-file "${ENVCHECK_PROM_DIR:-/var/lib/node_exporter/textfile}/envcheck.prom")
fi

# 55 s: inside Slurm's 60 s, with time left for scontrol.
line=$(timeout -k 3 55 "$envcheck" "${args[@]}" --exit-codes nagios --drain "${prom[@]}" 2>>"$log")
rc=$?
echo "$(date -Is) ${SLURMD_NODENAME:-$(hostname -s)} rc=$rc $line" >>"$log"
# Slurm ignores this exit code; it is kept for running the script by hand.
exit "$rc"
