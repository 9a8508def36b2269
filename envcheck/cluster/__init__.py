"""Cluster plumbing: exit-code schemes, Prometheus textfile, Slurm drain, launcher detection.

Pure: ``exitmodes``, ``prom`` (rendering), ``hostlist``, ``launch``, ``slurm.decide``.
Edges: ``atomic.write_text`` (files) and ``slurm.apply`` (runs ``scontrol``). Nothing here
imports torch.
"""
