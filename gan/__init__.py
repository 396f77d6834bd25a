"""The GAN: models, training step, tf.data reader. No Prefect here: runs wherever TensorFlow does.

Importing this package does not import TensorFlow. It does choose TensorFlow's CPU kernels,
so import it before TensorFlow: oneDNN's, which TensorFlow turns on by itself only on CPUs
with AVX512-VNNI, AVX512-BF16 or AMX, and which train faster on AVX2 CPUs too
(docs/training-speed.md). TF_ENABLE_ONEDNN_OPTS=0 in the environment keeps TensorFlow's.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
