"""Launcher-agnostic health-check plumbing shared by doctor and validate.

Pure: ``exitmodes`` (exit-code schemes), ``prom`` (Prometheus textfile rendering),
``hostlist`` (Slurm hostlist expressions), ``launch`` (torchrun/srun detection),
``slurm.decide``. Edge: ``slurm.apply`` (runs ``scontrol``). Nothing here imports torch or
anything from envcheck.validate (tests/cluster/test_layering.py).
"""
