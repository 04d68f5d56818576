"""Write the network presets in ``examples/`` (deterministic; run from the project root).

    python examples/build_presets.py

Each preset is built with the :class:`core.graph.Graph` builder, laid out left
to right (the target input sits under the loss) and saved without weights, so
opening one initializes it afresh from the seed. The textbook presets (abc,
sigmoid neuron, …) are written by hand elsewhere; this script only writes the
files listed in :data:`PRESETS`.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from core.graph import Graph  # noqa: E402
from core.serialize import save_graph  # noqa: E402

STEP_X = 300.0  # horizontal distance between consecutive nodes: the widest cards (conv) are ~290 px
TARGET_Y = 190.0  # below the tallest cards (~150 px)


class Chain:
    """Adds nodes one after another, each fed by the previous one, placed left to right."""

    def __init__(self, graph: Graph, first):
        self.g = graph
        self.last = first
        self.x = graph.layout[first.id][0]

    def __call__(self, op_id, name, **params):
        self.x += STEP_X
        self.last = self.g.add(op_id, self.last, name=name, pos=(self.x, 0.0), **params)
        return self.last

    def finish(self, loss_op="softmax_cross_entropy", target_shape=(None,), target_value=None,
               **loss_params):
        """Add the target input and the loss node; set the graph's loss."""
        self.x += STEP_X
        target = self.g.add("input", name="label", shape=target_shape, role="target",
                            value=target_value, pos=(self.x - STEP_X, TARGET_Y))
        loss = self.g.add(loss_op, self.last, target, name="loss", pos=(self.x, 0.0),
                          **loss_params)
        self.g.set_loss(loss)
        return loss


def _mnist_graph(name: str, description: str) -> tuple:
    g = Graph("float32", name=name)
    g.description = description
    image = g.add("input", name="image", shape=(None, 1, 28, 28), role="features",
                  pos=(0.0, 0.0))
    return g, Chain(g, image)


def lenet5() -> Graph:
    g, c = _mnist_graph(
        "LeNet-5",
        "LeCun et al. (1998) with ReLU and max-pooling, for MNIST: conv 6@5×5 (padding 2) → "
        "pool → conv 16@5×5 → pool → dense 120 → 84 → 10, softmax cross-entropy. 61,706 "
        "parameters. With momentum SGD (0.9, learning rate 0.01, batch 64, cosine decay) it "
        "reached 99.0% test accuracy on full MNIST within 6–7 epochs and about 99.1% after 10.")
    c("conv2d", "conv1", out_channels=6, kernel=(5, 5), padding=(2, 2))
    c("relu", "relu1")
    c("max_pool2d", "pool1", kernel=(2, 2), stride=(2, 2))
    c("conv2d", "conv2", out_channels=16, kernel=(5, 5))
    c("relu", "relu2")
    c("max_pool2d", "pool2", kernel=(2, 2), stride=(2, 2))
    c("flatten", "flatten")
    c("dense", "fc1", units=120)
    c("relu", "relu3")
    c("dense", "fc2", units=84)
    c("relu", "relu4")
    c("dense", "fc3", units=10, init="xavier_uniform")
    c.finish()
    return g


def keras_mnist_cnn() -> Graph:
    g, c = _mnist_graph(
        "Keras MNIST CNN",
        "The classic Keras example network: conv 32@3×3 → conv 64@3×3 → max-pool → dropout "
        "0.25 → dense 128 → dropout 0.5 → dense 10, softmax cross-entropy. 1,199,882 "
        "parameters; about 99% test accuracy.")
    c("conv2d", "conv1", out_channels=32, kernel=(3, 3))
    c("relu", "relu1")
    c("conv2d", "conv2", out_channels=64, kernel=(3, 3))
    c("relu", "relu2")
    c("max_pool2d", "pool", kernel=(2, 2), stride=(2, 2))
    c("dropout", "dropout1", p=0.25)
    c("flatten", "flatten")
    c("dense", "fc1", units=128)
    c("relu", "relu3")
    c("dropout", "dropout2", p=0.5)
    c("dense", "fc2", units=10, init="xavier_uniform")
    c.finish()
    return g


def mlp_784_30_10() -> Graph:
    g, c = _mnist_graph(
        "MLP 784-30-10 (sigmoid)",
        "Nielsen's network from 'Neural Networks and Deep Learning': 784 inputs, 30 sigmoid "
        "hidden units, 10 outputs, trained with cross-entropy (softmax). 23,860 parameters; "
        "about 95% test accuracy after 5 epochs of momentum SGD on full MNIST.")
    c("flatten", "flatten")
    c("dense", "hidden", units=30, init="xavier_uniform")
    c("sigmoid", "sigmoid")
    c("dense", "output", units=10, init="xavier_uniform")
    c.finish()
    return g


def logistic_regression_mnist() -> Graph:
    g, c = _mnist_graph(
        "Logistic regression (MNIST)",
        "Multinomial logistic regression on the 784 pixels: one dense layer of 10 and softmax "
        "cross-entropy. 7,850 parameters; about 92% test accuracy on full MNIST.")
    c("flatten", "flatten")
    c("dense", "linear", units=10, init="zeros")
    c.finish()
    return g


def xor_mlp() -> Graph:
    g = Graph("float64", name="XOR MLP")
    g.description = ("The four XOR points cannot be split by one line; a hidden layer of 4 "
                     "tanh units can. 2 → 4 (tanh) → 1, binary cross-entropy on the logit. "
                     "The data is stored in the input nodes: train it as it is.")
    x = g.add("input", name="x", shape=(None, 2), role="features",
              value=[[0, 0], [0, 1], [1, 0], [1, 1]], pos=(0.0, 0.0))
    c = Chain(g, x)
    c("dense", "hidden", units=4, init="xavier_uniform")
    c("tanh", "tanh")
    c("dense", "output", units=1, init="xavier_uniform")
    c.finish("binary_cross_entropy", target_shape=(None, 1),
             target_value=[[0], [1], [1], [0]], from_logits=True)
    return g


def alexnet() -> Graph:
    g = Graph("float32", name="AlexNet")
    g.description = (
        "Krizhevsky, Sutskever & Hinton (2012), single-tower form without local response "
        "normalization: 227×227×3 → conv 96@11×11/4 (55×55×96) → pool 3/2 → conv 256@5×5 → "
        "pool → conv 384, 384, 256 @3×3 → pool (6×6×256) → dense 4096 → 4096 → 1000. "
        "62,378,344 parameters. For building and inspecting shapes, not for training here.")
    image = g.add("input", name="image", shape=(None, 3, 227, 227), role="features",
                  pos=(0.0, 0.0))
    c = Chain(g, image)
    c("conv2d", "conv1", out_channels=96, kernel=(11, 11), stride=(4, 4))
    c("relu", "relu1")
    c("max_pool2d", "pool1", kernel=(3, 3), stride=(2, 2))
    c("conv2d", "conv2", out_channels=256, kernel=(5, 5), padding=(2, 2))
    c("relu", "relu2")
    c("max_pool2d", "pool2", kernel=(3, 3), stride=(2, 2))
    c("conv2d", "conv3", out_channels=384, kernel=(3, 3), padding=(1, 1))
    c("relu", "relu3")
    c("conv2d", "conv4", out_channels=384, kernel=(3, 3), padding=(1, 1))
    c("relu", "relu4")
    c("conv2d", "conv5", out_channels=256, kernel=(3, 3), padding=(1, 1))
    c("relu", "relu5")
    c("max_pool2d", "pool5", kernel=(3, 3), stride=(2, 2))
    c("flatten", "flatten")
    c("dropout", "dropout6", p=0.5)
    c("dense", "fc6", units=4096)
    c("relu", "relu6")
    c("dropout", "dropout7", p=0.5)
    c("dense", "fc7", units=4096)
    c("relu", "relu7")
    c("dense", "fc8", units=1000)
    c.finish()
    return g


VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M")


def vgg16() -> Graph:
    g = Graph("float32", name="VGG-16")
    g.description = (
        "Simonyan & Zisserman (2014), configuration D: thirteen 3×3 convolutions (padding 1) "
        "in five blocks, each followed by 2×2 max-pooling (224 → 7), then dense 4096 → 4096 "
        "→ 1000. 138,357,544 parameters. For building and inspecting shapes.")
    image = g.add("input", name="image", shape=(None, 3, 224, 224), role="features",
                  pos=(0.0, 0.0))
    c = Chain(g, image)
    block, conv = 1, 1
    for item in VGG16_CONFIG:
        if item == "M":
            c("max_pool2d", f"pool{block}", kernel=(2, 2), stride=(2, 2))
            block, conv = block + 1, 1
        else:
            c("conv2d", f"conv{block}_{conv}", out_channels=item, kernel=(3, 3),
              padding=(1, 1))
            c("relu", f"relu{block}_{conv}")
            conv += 1
    c("flatten", "flatten")
    c("dense", "fc6", units=4096)
    c("relu", "relu6")
    c("dropout", "dropout6", p=0.5)
    c("dense", "fc7", units=4096)
    c("relu", "relu7")
    c("dropout", "dropout7", p=0.5)
    c("dense", "fc8", units=1000)
    c.finish()
    return g


PRESETS = {
    "lenet5": lenet5,
    "keras_mnist_cnn": keras_mnist_cnn,
    "mlp_784_30_10": mlp_784_30_10,
    "logistic_regression_mnist": logistic_regression_mnist,
    "xor_mlp": xor_mlp,
    "alexnet": alexnet,
    "vgg16": vgg16,
}


def main(argv=None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(PRESETS)
    for name in names:
        g = PRESETS[name]()
        path = HERE / f"{name}.json"
        # values only for the small inputs (XOR's data); no weights: presets start untrained
        save_graph(g, path, values=True, arrays=False)
        print(f"wrote {path.name}: {len(g.nodes)} nodes, {g.parameter_count():,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
