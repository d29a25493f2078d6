"""What dllab's Hydra launchers do (their thin plugins are in ``hydra_plugins/``, which Hydra
scans at every start): ``slurm`` submits a sweep's jobs to a SLURM cluster, ``stacked`` trains
a sweep's jobs as stacks of models in this process. (``joblib`` is Hydra's, with the worker
guard of :class:`dllab.sweeps.jobs.EndsWithSweep`.)"""
