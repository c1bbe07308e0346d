"""Video generation metrics: FVD and KVD on I3D features, IS with a UCF101 C3D classifier.

`fvd.py` holds the distances and the I3D feature extractor, `i3d.py` the network,
`inception_score.py` and `c3d.py` the Inception Score, `features.py` the batching and the
on-disk feature cache, `resize.py` the reference implementations' frame resizing.
"""
