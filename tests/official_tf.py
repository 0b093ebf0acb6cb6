"""The official DeepLabV3+ graph in TensorFlow, for the parity tests of segkit's converted checkpoints.

Written from tensorflow/models research/deeplab (model.py: _extract_features, refine_by_decoder,
_get_branch_logits, multi_scale_logits, predict_labels_multi_scale, _split_separable_conv2d, scale_dimension;
core/xception.py: xception_module, separable_conv2d_same, fixed_padding, stack_blocks_dense,
xception_41/65/71; core/resnet_utils.conv2d_same;
core/feature_extractor.py: the decoder end points), with TensorFlow ops in NHWC, the layers of tf-slim as the
official code calls them (``weights``, ``depthwise_weights``, ``BatchNorm/{gamma,beta,moving_mean,
moving_variance}``, ``biases``) and the variable names its scopes give. Nothing here comes from segkit: the
test compares the two on a checkpoint this file writes.

Variables are created on first use with random values (batch-norm statistics included), as a randomly
initialized official graph would hold them; running the graph again (another size or output stride) reuses
them. Usage (in a subprocess: TensorFlow and PyTorch are not loaded into one process by the tests):

    python official_tf.py ROOT ARCH,ARCH,... SIZE,SIZE,... OS,OS,...     (ARCH: 41, 65, 71)

writes, for each ARCH into OUT = ``ROOT/xception<ARCH>``: ``OUT/model.ckpt`` (plus ``global_step`` and a
``Momentum`` slot, which a converter must drop), ``OUT/image_<size>.npy`` (NCHW, normalized) and
``OUT/logits_<size>_os<os>.npy`` (NCHW, at the input size); and the official evaluation of a 150x119 image
(``eval_image.npy``) padded to a 193x193 eval crop, output stride 16, scales 0.5/0.75/1.0/1.25 with flips:
``eval_probs.npy`` (the averaged probabilities, cropped to the image).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ENCODER_EPS, HEAD_EPS = 1e-3, 1e-5  # xception.py batch_norm_epsilon; model.py batch_norm_params


def scale_dimension(dim, scale):  # model.py
    return int((float(dim) - 1.0) * scale + 1.0)


class Graph:
    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.variables = {}
        self.scope = []

    def var(self, name, shape, kind):
        full = "/".join(self.scope + [name])
        if full not in self.variables:
            r = self.rng
            if kind == "weights":  # variance 1 / fan-in, so that activations stay small through 20+ blocks
                fan_in = int(np.prod(shape[:-1])) if len(shape) == 4 and shape[-1] != 1 else int(np.prod(shape[:2]))
                value = r.standard_normal(shape) * np.sqrt(1.0 / fan_in)
            elif kind == "gamma":
                value = r.uniform(0.5, 1.5, shape)
            elif kind == "mean":
                value = r.normal(0.0, 0.2, shape)
            elif kind == "variance":
                value = r.uniform(0.5, 2.0, shape)
            else:  # beta, biases
                value = r.normal(0.0, 0.2, shape)
            self.variables[full] = tf.constant(value.astype(np.float32))
        return self.variables[full]

    class _Scope:
        def __init__(self, graph, name):
            self.graph, self.name = graph, name

        def __enter__(self):
            self.graph.scope.append(self.name)

        def __exit__(self, *exc):
            self.graph.scope.pop()

    def scoped(self, name):
        return Graph._Scope(self, name)

    # tf-slim layers as the official code calls them ----------------------------------------------------------
    def batch_norm(self, x, eps):
        with self.scoped("BatchNorm"):
            c = x.shape[-1]
            return tf.nn.batch_normalization(
                x,
                self.var("moving_mean", (c,), "mean"),
                self.var("moving_variance", (c,), "variance"),
                self.var("beta", (c,), "beta"),
                self.var("gamma", (c,), "gamma"),
                eps,
            )

    def conv2d(self, x, depth, k, scope, stride=1, rate=1, padding="SAME", eps=None, relu=False, bias=False):
        """slim.conv2d: conv -> batch norm (``eps``) or biases -> optional ReLU."""
        with self.scoped(scope):
            w = self.var("weights", (k, k, x.shape[-1], depth), "weights")
            x = tf.nn.conv2d(x, w, strides=stride, padding=padding, dilations=rate)
            if eps is not None:
                x = self.batch_norm(x, eps)
            if bias:
                x = x + self.var("biases", (depth,), "biases")
            return tf.nn.relu(x) if relu else x

    def depthwise(self, x, scope, stride=1, rate=1, padding="SAME", eps=ENCODER_EPS, relu=False):
        """slim.separable_conv2d(num_outputs=None): depthwise 3x3 -> batch norm -> optional ReLU."""
        with self.scoped(scope):
            w = self.var("depthwise_weights", (3, 3, x.shape[-1], 1), "weights")
            if stride > 1:  # tf.nn.depthwise_conv2d takes a rate or a stride, as slim does
                x = tf.nn.depthwise_conv2d(x, w, strides=[1, stride, stride, 1], padding=padding)
            else:
                x = tf.nn.depthwise_conv2d(x, w, strides=[1, 1, 1, 1], padding=padding, dilations=[rate, rate])
            x = self.batch_norm(x, eps)
            return tf.nn.relu(x) if relu else x

    # core/xception.py --------------------------------------------------------------------------------------
    @staticmethod
    def fixed_padding(x, kernel_size, rate=1):
        effective = kernel_size + (kernel_size - 1) * (rate - 1)
        total = effective - 1
        beg = total // 2
        return tf.pad(x, [[0, 0], [beg, total - beg], [beg, total - beg], [0, 0]])

    def separable_conv2d_same(self, x, depth, stride, rate, scope, relu):
        if stride == 1:
            x = self.depthwise(x, scope + "_depthwise", rate=rate, relu=relu)
        else:
            x = self.depthwise(
                self.fixed_padding(x, 3, rate),
                scope + "_depthwise",
                stride=stride,
                rate=rate,
                padding="VALID",
                relu=relu,
            )
        return self.conv2d(x, depth, 1, scope + "_pointwise", eps=ENCODER_EPS, relu=relu)

    def xception_module(self, x, depth_list, skip, stride, rate, act_in_separable, end_points, name):
        with self.scoped("xception_module"):
            residual = x
            for i in range(3):
                if not act_in_separable:
                    residual = tf.nn.relu(residual)
                residual = self.separable_conv2d_same(
                    residual,
                    depth_list[i],
                    stride if i == 2 else 1,
                    rate,
                    f"separable_conv{i + 1}",
                    relu=act_in_separable,
                )
                if i == 1:
                    end_points[f"{name}/xception_module/separable_conv2_pointwise"] = residual
            if skip == "conv":
                shortcut = self.conv2d(x, depth_list[-1], 1, "shortcut", stride=stride, eps=ENCODER_EPS)
                return residual + shortcut
            if skip == "sum":
                return residual + x
            return residual

    def xception(self, x, arch, output_stride, end_points):
        """Blocks of xception_41/65/71: (scope, depth_list, skip, act_in_separable, units, stride)."""
        entry = {
            41: [(128, 2), (256, 2), (728, 2)],
            65: [(128, 2), (256, 2), (728, 2)],
            71: [(128, 2), (256, 1), (256, 2), (728, 1), (728, 2)],
        }[arch]
        blocks = [(f"entry_flow/block{i + 1}", [d] * 3, "conv", False, 1, s) for i, (d, s) in enumerate(entry)]
        blocks.append(("middle_flow/block1", [728] * 3, "sum", False, {41: 8, 65: 16, 71: 16}[arch], 1))
        blocks.append(("exit_flow/block1", [728, 1024, 1024], "conv", False, 1, 2))
        blocks.append(("exit_flow/block2", [1536, 1536, 2048], "none", True, 1, 1))
        with self.scoped(f"xception_{arch}"):
            x = self.conv2d(
                self.fixed_padding(x, 3),
                32,
                3,
                "entry_flow/conv1_1",
                stride=2,
                padding="VALID",
                eps=ENCODER_EPS,
                relu=True,
            )  # resnet_utils.conv2d_same
            x = self.conv2d(x, 64, 3, "entry_flow/conv1_2", eps=ENCODER_EPS, relu=True)
            current_stride, rate = 2, 1  # stack_blocks_dense, with output_stride halved for the stem
            for scope, depths, skip, act, units, stride in blocks:
                for u in range(units):
                    name = f"{scope}/unit_{u + 1}"
                    with self.scoped(name):
                        if current_stride == output_stride:
                            x = self.xception_module(x, depths, skip, 1, rate, act, end_points, name)
                            rate *= stride
                        else:
                            x = self.xception_module(x, depths, skip, stride, 1, act, end_points, name)
                            current_stride *= stride
        return x

    # model.py ----------------------------------------------------------------------------------------------
    def split_separable_conv2d(self, x, depth, rate, scope):
        x = self.depthwise(x, scope + "_depthwise", rate=rate, eps=HEAD_EPS, relu=True)
        return self.conv2d(x, depth, 1, scope + "_pointwise", eps=HEAD_EPS, relu=True)

    def logits(self, images, arch, output_stride, num_classes):
        """predict_labels' logits: _get_logits resized to the input."""
        return tf.compat.v1.image.resize_bilinear(
            self.stride4_logits(images, arch, output_stride, num_classes), images.shape[1:3], align_corners=True
        )

    def multi_scale_probs(self, images, arch, output_stride, num_classes, scales, flip):
        """predict_labels_multi_scale's averaged probabilities (before its argmax): per scale (and flip),
        multi_scale_logits with image_pyramid=[scale], resized to the crop, softmax."""
        crop_h, crop_w = images.shape[1:3]
        probs = []
        for scale in scales:
            for flipped in (False, True) if flip else (False,):
                inputs = tf.reverse(images, [2]) if flipped else images
                if scale != 1.0:  # multi_scale_logits
                    inputs = tf.compat.v1.image.resize_bilinear(
                        inputs, [scale_dimension(crop_h, scale), scale_dimension(crop_w, scale)], align_corners=True
                    )
                logits = self.stride4_logits(inputs, arch, output_stride, num_classes)
                big = max(1.0, scale) / 4
                logits = tf.compat.v1.image.resize_bilinear(
                    logits, [scale_dimension(crop_h, big), scale_dimension(crop_w, big)], align_corners=True
                )
                logits = tf.compat.v1.image.resize_bilinear(logits, [crop_h, crop_w], align_corners=True)
                probs.append(tf.nn.softmax(tf.reverse(logits, [2]) if flipped else logits))
        return tf.reduce_mean(tf.stack(probs), axis=0)

    def stride4_logits(self, images, arch, output_stride, num_classes):
        """_get_logits with the zoo's settings: ASPP with separable convs and image pooling, decoder output
        stride 4 with separable convs, crop size = the input size."""
        h, w = images.shape[1:3]
        end_points = {}
        features = self.xception(images, arch, output_stride, end_points)
        rates = [6, 12, 18] if output_stride == 16 else [12, 24, 36]
        pool_h, pool_w = scale_dimension(h, 1 / output_stride), scale_dimension(w, 1 / output_stride)
        image_feature = tf.nn.avg_pool2d(features, [pool_h, pool_w], [pool_h, pool_w], "VALID")
        image_feature = self.conv2d(image_feature, 256, 1, "image_pooling", eps=HEAD_EPS, relu=True)
        image_feature = tf.compat.v1.image.resize_bilinear(image_feature, [pool_h, pool_w], align_corners=True)
        branches = [image_feature, self.conv2d(features, 256, 1, "aspp0", eps=HEAD_EPS, relu=True)]
        branches += [self.split_separable_conv2d(features, 256, r, f"aspp{i}") for i, r in enumerate(rates, 1)]
        x = self.conv2d(tf.concat(branches, 3), 256, 1, "concat_projection", eps=HEAD_EPS, relu=True)
        # decoder (feature_extractor: entry_flow/block2 for xception_41/65, block3 for xception_71)
        tap = f"entry_flow/block{3 if arch == 71 else 2}/unit_1/xception_module/separable_conv2_pointwise"
        dec_h, dec_w = scale_dimension(h, 1 / 4), scale_dimension(w, 1 / 4)
        with self.scoped("decoder"):
            low = self.conv2d(end_points[tap], 48, 1, "feature_projection0", eps=HEAD_EPS, relu=True)
            parts = [tf.compat.v1.image.resize_bilinear(f, [dec_h, dec_w], align_corners=True) for f in (x, low)]
            x = self.split_separable_conv2d(tf.concat(parts, 3), 256, 1, "decoder_conv0")
            x = self.split_separable_conv2d(x, 256, 1, "decoder_conv1")
        with self.scoped("logits"):
            return self.conv2d(x, num_classes, 1, "semantic", bias=True)


def main(out, arch, sizes, strides, num_classes=21):
    os.makedirs(out, exist_ok=True)
    graph = Graph(seed=arch)
    rng = np.random.default_rng(1)
    for size in sizes:
        image = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)  # x / 127.5 - 1, as the zoo's inputs
        np.save(f"{out}/image_{size}.npy", image.transpose(0, 3, 1, 2))
        for output_stride in strides:
            logits = graph.logits(tf.constant(image), arch, output_stride, num_classes).numpy()
            np.save(f"{out}/logits_{size}_os{output_stride}.npy", logits.transpose(0, 3, 1, 2))
    # the official evaluation (eval.py): an image padded to the eval crop with the mean pixel (0 after
    # normalization) at the bottom/right, scales and flips of the padded image
    image = rng.uniform(-1, 1, (1, 150, 119, 3)).astype(np.float32)
    padded = np.pad(image, [(0, 0), (0, 193 - 150), (0, 193 - 119), (0, 0)])
    probs = graph.multi_scale_probs(tf.constant(padded), arch, 16, num_classes, (0.5, 0.75, 1.0, 1.25), True)
    np.save(f"{out}/eval_image.npy", image.transpose(0, 3, 1, 2))
    np.save(f"{out}/eval_probs.npy", probs.numpy()[:, :150, :119].transpose(0, 3, 1, 2))
    names = dict(graph.variables)
    names["global_step"] = tf.constant(np.int64(30000))
    names["logits/semantic/weights/Momentum"] = tf.zeros_like(graph.variables["logits/semantic/weights"])
    tf.raw_ops.SaveV2(
        prefix=f"{out}/model.ckpt",
        tensor_names=list(names),
        shape_and_slices=[""] * len(names),
        tensors=list(names.values()),
    )
    print(len(graph.variables), "variables")


if __name__ == "__main__":
    for arch in sys.argv[2].split(","):  # OUT/xception<arch>/...
        main(
            f"{sys.argv[1]}/xception{arch}",
            int(arch),
            [int(s) for s in sys.argv[3].split(",")],
            [int(s) for s in sys.argv[4].split(",")],
        )
