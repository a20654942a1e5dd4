"""The pipelines: each command's steps, end to end, over the layers below (files, model, measure,
decide, reinit). ``inspect``, ``diagnose`` and ``reinit`` for files, ``live_diagnose`` and
``live_reinit`` for a model in memory, ``documents`` for the JSON documents they return."""
