"""Cluster recipes (Slurm, Kubernetes, container image), shipped as envcheck._recipes.cluster (see README.md)."""
