"""The two networks and what turns them into fast predictors.

* :mod:`.wscnn` - WSCNN (Sailem et al. 2017): conv layers, class maps, global max/avg/fc head;
* :mod:`.deepyeast` - DeepYeast (Pärnamaa & Parts 2017): 8 convs, 3 fully connected layers;
* :mod:`.layers` - the conv-BN-ReLU unit both share;
* :mod:`.registry` - build a network from its kind and config (how model files rebuild it);
* :mod:`.folding` - the prediction copy: batch norm folded, channels_last, fast input gradient.

Nothing here reads files or knows about folders; configs are JSON-serialisable dataclasses.
"""
