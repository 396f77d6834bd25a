"""The GAN: models, training step, tf.data reader. No Prefect here: runs wherever TensorFlow does.

Importing this package does not import TensorFlow; `gan.records` is TensorFlow-free so
ingest workers can write shards without paying TensorFlow's ~800 MB of memory.
"""
