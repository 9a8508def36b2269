"""validate's distributed launch mode: this process is one rank of a torchrun/srun job.

``mode`` (the rank's run and rank 0's outputs), ``join`` (join the job, report to rank 0),
``channel`` (the rank -> rank 0 result channel), ``aggregate`` (rank 0: the cluster report,
pure), ``pairwise`` (node-pair planning and blame, pure), ``rank`` (the all-reduce child of
every rank). Launcher detection itself is launcher-agnostic and lives in envcheck.cluster.
"""
