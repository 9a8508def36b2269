"""envcheck validate: a real workload that certifies a machine for large-model work.

Layout: ``checks/`` (the six checks; the only code here that runs torch, always inside a
worker process), ``worker`` (the process a check runs in), ``runner`` (isolation, progress,
the report always written), ``certify`` (pure: figures + recipes -> verdict), ``app`` (option
checks between the CLI and the runner), ``results``/``config`` (data). Importing this package
never imports torch.
"""
