"""DeepYeast tasks: per-cell classification, per-group aggregation, transfer.

* :mod:`.data` - options and the one crop loader (class folders, per-channel files, HDF5), hold-out;
* :mod:`.train` - train (or fine-tune to new classes);
* :mod:`.classify` - class probabilities and layer embeddings of crops;
* :mod:`.evaluate` - per-cell metrics and per-group accuracy;
* :mod:`.aggregate` - the Dirichlet posterior of a group (protein, well, field);
* :mod:`.fields` - a whole field: segment, crop, classify, aggregate;
* :mod:`.predict_files` - crops and fields from files into prediction and group tables;
* :mod:`.baseline` - the paper's comparisons: random forest on hand-made features, transfer curve;
* :mod:`.explore` - t-SNE of layer outputs, confusion matrix and per-class plots.
"""
