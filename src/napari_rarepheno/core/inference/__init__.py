"""Running a trained network on images, big or small, and reading what it saw.

* :mod:`.predict` - WSCNN on images in memory: probabilities, class maps, gradient saliency;
* :mod:`.tiling` - the tile plan and exact stitching; :class:`LazyImage` reads windows of big arrays;
* :mod:`.lazy` - streamed prediction of images too big for memory;
* :mod:`.border` - the background margin a max-pooling WSCNN needs at the image border;
* :mod:`.saliency` - class maps, gradient saliency, unit geometry;
* :mod:`.segment` - saliency -> objects (smoothing, threshold, peaks, watershed);
* :mod:`.arrays` - a network over in-memory arrays: probabilities, loss, accuracy.
"""
