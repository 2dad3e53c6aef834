#!/usr/bin/env bash
# DARTS search on CIFAR-10 with the paper's search settings (Liu, Simonyan, Yang, ICLR 2019):
# 8 cells, 16 initial channels, 50 epochs, batch 64, the training set halved into weight and
# architecture data; weights SGD (lr 0.025 cosine to 0.001, momentum 0.9, weight decay 3e-4,
# gradient clip 5), architecture Adam (lr 3e-4, betas 0.5/0.999, weight decay 1e-3).
# Plain DARTS, first order; options given after DATA_ROOT win, for example
#   scripts/search_darts_cifar10.sh /data/cifar10 --order 2                  # second order
#   scripts/search_darts_cifar10.sh /data/cifar10 --collapse-remedy aux-skip # DARTS-
#   scripts/search_darts_cifar10.sh /data/cifar10 --partial-channels 4 --batch-size 256 \
#       --arch-lr 6e-4 --w-lr 0.1 --warmup-epochs 15                        # PC-DARTS
# DATA_ROOT: CIFAR-10 as torchvision pickles or JPEG class folders, zipped or not
# (e.g. ../shared/data/cifar10-jpeg). Resume an interrupted search with
#   python -m nas search --resume RUN_FOLDER
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 DATA_ROOT [more nas search options]" >&2
    exit 2
fi
DATA_ROOT=$1
shift
exec "${PYTHON:-python}" -m nas search --strategy darts --space darts --dataset cifar10 --data-root "$DATA_ROOT" \
    --epochs 50 --batch-size 64 --init-channels 16 --layers 8 --order 1 --collapse-remedy none \
    --arch-lr 3e-4 --warmup-epochs 0 "$@"
