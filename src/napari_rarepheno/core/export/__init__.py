"""Models for other tools: packages that run without napari-rarepheno.

* :mod:`.bioimageio_net` - the network as a bioimage.io package runs it: WSCNN or DeepYeast
  with the parts of the model's normalisation that bioimage.io preprocessing cannot say
  (per-crop smoothing, per-channel clipping, the WSCNN border) inside its ``forward``; its
  source is copied into the package as the architecture file;
* :mod:`.bioimageio` - ``export_bioimageio``: a model file -> a bioimage.io model package
  (format 0.5: rdf.yaml, weights, architecture, test tensors, cover, README) and
  ``check_bioimageio``, the bioimage.io validator run offline.
"""
