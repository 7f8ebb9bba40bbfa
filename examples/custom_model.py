"""Bring your own model: find a boosting ticket, PGD-train it, evaluate it with AutoAttack.

    python examples/custom_model.py                          # synthetic data, tiny: 3.4 CPU-minutes (2-core machine)
    python examples/custom_model.py --data npz:../shared/data/cifar10_exact_subset.npz --search-epochs 8 \
        --epochs 8 --n 200                                   # real CIFAR-10 subset: about 15 minutes on 2 cores
The trained checkpoint then opens with
`PYTHONPATH=examples robustlth eval --checkpoint RUN_DIR --trust-factory custom_model:small_cnn`.
"""
import argparse

import torch.nn as nn

import robustlth as rl
from robustlth.models import Normalized  # the model takes [0, 1] images and normalises inside


def small_cnn(width: float = 1.0) -> nn.Module:
    c = max(1, int(32 * width))
    return Normalized(nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(2 * c, 10)))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="synthetic")
    p.add_argument("--search-epochs", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n", type=int, default=100, help="test images for the final evaluation")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--n-train", type=int, default=None, help="a class-balanced subset of the training images")
    p.add_argument("--out", default="runs")
    a = p.parse_args()
    data = rl.data_config(a.data).replace(n_train=a.n_train, val_size=100)  # per-epoch curves on held-out images, not the test set

    ticket = rl.find_ticket(small_cnn, data, width=a.width, epochs=a.search_epochs, ratio=0.8, out=a.out)
    trained = rl.adversarial_train(ticket, data, epochs=a.epochs, out=a.out)  # PGD-10, paper's warm-up
    result = rl.evaluate_model(trained.model, data, attacks=["pgd20", "autoattack"], n=a.n)  # the first n test images
    print(f"ticket sparsity {ticket.sparsity()['sparsity']:.2f}; worst case over PGD-20 and AutoAttack on the first "
          f"{result['n']} test images: {result['worst_case']:.3f} (clean {result['clean']:.3f}); "
          f"checkpoint: {trained.run_dir}")
    # `robustlth eval` evaluates the run's whole test set unless told otherwise (the training recorded no smaller
    # final evaluation), so its numbers differ from the ones above; with --n it repeats this evaluation exactly.
    print(f"the same numbers from the command line: PYTHONPATH=examples robustlth eval --checkpoint {trained.run_dir} "
          f"--trust-factory custom_model:small_cnn --attacks pgd20,autoattack --n {result['n']}")
