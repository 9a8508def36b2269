"""envcheck validate: a real workload that certifies a machine for large-model work.

The whole engine lives here (ARCHITECTURE.md, "validate's flow"): ``app`` (every decision
between the CLI and the run: usage checks, the launch mode, deadlines, failed reports),
``runner`` (one isolated worker per check, the report always written), ``worker`` (the process a
check runs in), ``checks/`` (the workloads; the only code here that runs torch, always inside
a worker or rank), ``certify`` (pure: figures + recipes -> verdict), ``output`` (the one output
stage of both modes), ``distributed/`` (the torchrun/srun mode), ``procs`` (what a worker runs;
launching is envcheck.proc), ``results``/``config`` (data). Importing this package never
imports torch.
"""
