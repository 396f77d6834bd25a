"""D's 4x4 stride-2 convolution with its input gradient computed by phases: the same numbers, faster.

The input gradient of a stride-2 convolution is a transposed convolution. TensorFlow's CPU
kernel for it (Conv2DBackpropInput) was 44% of the float32 training step's op time at
96x160, running at a third to a half of the forward convolution's rate on the same
multiply-adds. Every output pixel of a 4x4 stride-2 transposed convolution belongs to
one of four phases (row and column parity), and each phase is a 2x2 stride-1 correlation
of the upstream gradient with a quarter of the kernel's taps. The four quarters, stacked
as one (2, 2, O, 4C) kernel, make the whole gradient one ordinary convolution over the
padded upstream gradient followed by a pixel shuffle: the same multiply-adds, run by the
fast forward kernel. With 1 pixel of "same" padding on each side (even sizes), along one
axis:
    dx[2m]     = dy[m - 1] w[3] + dy[m] w[1]        (phase 0: taps 3, 1)
    dx[2m + 1] = dy[m] w[2]     + dy[m + 1] w[0]    (phase 1: taps 2, 0, one row later)

Measured on an AVX2 CPU in float32 at batch 128 (benchmarks/train.py --ablate has the
step-level figure): 1.5-2x faster where the upstream gradient has >= 256 channels, 5-10%
slower below that, so `PhaseConv2D` uses it from MIN_CHANNELS filters up. bfloat16 and GPUs
keep TensorFlow's kernels (gan/step.py decides), where this was not measured. The layer
is a keras Conv2D with the same weights, so checkpoints do not change.
"""

from __future__ import annotations

import tensorflow as tf
from keras import layers

MIN_CHANNELS = 256  # filters from which the phases were faster (see above)
TAPS = ((3, 1), (2, 0))  # kernel taps of phase 0 and phase 1 along one axis, in input order


def _phase_kernel(kernel: tf.Tensor) -> tf.Tensor:
    """(4, 4, C, O) convolution kernel -> (2, 2, O, 4C): the four phases' taps, phase-major channels."""
    rows = []
    for qh in range(2):
        cols = []
        for qw in range(2):
            taps = [kernel[TAPS[ph][qh], TAPS[pw][qw]] for ph in range(2) for pw in range(2)]  # 4 x (C, O)
            cols.append(tf.transpose(tf.concat(taps, 0)))
        rows.append(tf.stack(cols))
    return tf.stack(rows)


def transposed_conv(dy: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """conv2d_transpose(dy, kernel, stride 2, "SAME") for a 4x4 kernel: (B, h, w, O) -> (B, 2h, 2w, C)."""
    channels = kernel.shape[2]
    h, w = tf.shape(dy)[1], tf.shape(dy)[2]
    padded = tf.pad(dy, [[0, 0], [1, 1], [1, 1], [0, 0]])
    phases = tf.nn.conv2d(padded, _phase_kernel(kernel), 1, "VALID")  # (B, h + 1, w + 1, 4C)
    parts = [
        phases[:, ph : ph + h, pw : pw + w, (2 * ph + pw) * channels : (2 * ph + pw + 1) * channels]
        for ph in range(2)
        for pw in range(2)
    ]
    return tf.nn.depth_to_space(tf.concat(parts, -1), 2)


@tf.custom_gradient
def strided_conv(x: tf.Tensor, kernel: tf.Tensor):
    """conv2d(x, kernel, stride 2, "SAME") whose input gradient is `transposed_conv`."""

    def gradient(dy: tf.Tensor):
        dx = transposed_conv(dy, kernel)
        dkernel = tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.shape(kernel), out_backprop=dy, strides=[1, 2, 2, 1], padding="SAME"
        )
        return dx, dkernel

    return tf.nn.conv2d(x, kernel, 2, "SAME"), gradient


class PhaseConv2D(layers.Conv2D):
    """A 4x4 stride-2 "same" Conv2D whose input gradient runs by phases (from MIN_CHANNELS filters)."""

    def build(self, input_shape):
        if self.kernel_size != (4, 4) or self.strides != (2, 2) or self.padding != "same":
            raise ValueError(
                f"PhaseConv2D is for 4x4 stride-2 'same' kernels, not {self.kernel_size} stride "
                f"{self.strides} {self.padding!r}"
            )
        super().build(input_shape)

    def convolution_op(self, inputs, kernel):
        if self.filters < MIN_CHANNELS:
            return super().convolution_op(inputs, kernel)
        return strided_conv(inputs, tf.convert_to_tensor(kernel))
