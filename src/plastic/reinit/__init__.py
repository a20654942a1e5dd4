"""Re-initialization: the options, the strategy registry (``registry``), the built-in strategies and the
new values. The pipeline that writes the new checkpoint is :mod:`plastic.pipelines.reinit`."""
