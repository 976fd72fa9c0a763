"""The classical side: hand-made per-cell features and the classifiers that use them.

* :mod:`.features` - intensity, shape, Haralick, Zernike, Gabor, correlation and radial features;
* :mod:`.classifiers` - random forest (the DeepYeast paper's baseline), logistic regression, few-shot curve;
* :mod:`.quality` - a cell / non-cell filter for crops.
"""
