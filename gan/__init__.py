"""The GAN: models, training step, tf.data reader. No Prefect here: runs wherever TensorFlow does.

Importing this package does not import TensorFlow; `synthwave.records` is TensorFlow-free so
ingest workers can write shards without paying TensorFlow's ~800 MB of memory.

It does choose TensorFlow's CPU kernels, so import it before TensorFlow: oneDNN's, which
TensorFlow turns on by itself only on CPUs with AVX512-VNNI, AVX512-BF16 or AMX. On an
AVX2 CPU they trained the DCGAN at 1.34x the images/s of TensorFlow's own kernels at
96x160 (benchmarks/train.py). TF_ENABLE_ONEDNN_OPTS=0 in the environment keeps TensorFlow's.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
