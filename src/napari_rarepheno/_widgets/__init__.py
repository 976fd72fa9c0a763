"""The napari docks (one module each) and their reusable parts.

* :mod:`.wscnn_dock` - "Rare phenotype (WSCNN)": :mod:`.wscnn_train`, :mod:`.wscnn_infer`
  (live saliency thresholds; per-image cache and re-segmentation in :mod:`.wscnn_results`).
* :mod:`.deepyeast_dock` - "Localization classes (DeepYeast)": train, classify cells.
* :mod:`.explore_dock` - "Explore": confusion matrix, t-SNE, few-shot transfer.

Parts: :mod:`._device` (device picker), :mod:`._paths` (file/folder pickers and
dialogs), :mod:`._progress` (progress bar + live loss plot), :mod:`._table` (results
table with CSV export and row <-> object selection), :mod:`._train_panel` (the Train
tab both networks share), :mod:`._export` ("Export all"), :mod:`._jobs` (the one job a
panel runs: its evented state idle/running/stopping/done/failed and the Run/Stop buttons
that follow it; every panel that runs engine work is a :class:`._jobs.JobPanel`).

Nothing here imports torch at import time: the engine is imported inside the jobs
that run in thread workers.
"""
