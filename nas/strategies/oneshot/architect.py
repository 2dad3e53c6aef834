"""Architecture steps of the DARTS bilevel optimisation.

The weights ``w`` minimise the training loss; the architecture parameters ``alpha`` minimise
the validation loss at the weights the training would reach. DARTS approximates that with
one step:

* first order: ``grad_alpha L_val(w, alpha)`` (the current weights stand in for the optimum);
* second order: ``grad_alpha L_val(w', alpha) - xi * H v`` with the unrolled weights
  ``w' = w - xi * (momentum + grad_w L_train(w, alpha) + weight_decay * w)``,
  ``v = grad_w' L_val(w', alpha)`` and the Hessian-vector product
  ``H v = grad^2_{alpha,w} L_train(w, alpha) v`` taken by central finite differences at
  ``w +- eps * v`` with ``eps = 0.01 / ||v||`` (Liu et al. 2019, eq. 7-8), ``xi`` being the
  weights' current learning rate.

In a search on several processes, ``average`` (:meth:`~nas.strategies.oneshot.distributed.Ranks.average_`)
makes every gradient the mean over the ranks: the architecture gradients before Adam's step,
and for second order also the training gradients of the unrolled step and the vector ``v``
(so every rank unrolls to the same ``w'`` and takes the same ``eps``).

The unrolled step happens in place on the model's weights, which are restored afterwards, so
no second copy of the supernet is built.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
import torch.nn.functional as F

from nas.strategies.oneshot.supernet import Supernet


class Architect:
    """Owns the architecture optimiser (Adam) and takes first or second order steps.

    >>> net = Supernet("nb201", C=4, layers=3)
    >>> w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9)
    >>> arch = Architect(net, order=1)
    >>> x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    >>> loss, logits = arch.step(x, y, x, y, w_lr=0.025, w_optimizer=w_opt)
    >>> logits.shape
    torch.Size([4, 10])
    """

    def __init__(self, model: Supernet, *, order: int = 1, lr: float = 3e-4, betas: tuple[float, float] = (0.5, 0.999),
                 weight_decay: float = 1e-3, w_momentum: float = 0.9, w_weight_decay: float = 3e-4,
                 autocast: Callable[[], AbstractContextManager] = nullcontext,
                 average: Callable[[Sequence[torch.Tensor]], None] | None = None):
        self.model = model
        self.average = average or (lambda tensors: None)
        self.order = order
        self.w_momentum = w_momentum
        self.w_weight_decay = w_weight_decay
        self.autocast = autocast
        self.optimizer = torch.optim.Adam(model.arch_parameters(), lr=lr, betas=betas, weight_decay=weight_decay)

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            logits = self.model(x)
        return F.cross_entropy(logits.float(), y), logits

    def step(self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, *,
             w_lr: float, w_optimizer: torch.optim.Optimizer) -> tuple[torch.Tensor, torch.Tensor]:
        """One update of the architecture parameters; returns the validation loss and logits
        (at the current weights for first order, at the unrolled weights for second order)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.order == 1:
            # Gradients for the architecture only: the weights' gradients (the costly half of
            # every convolution's backward) are not needed here and are never computed.
            # (The backward pass runs inside too: recomputed edges must see the same graph.)
            arch = self.model.arch_parameters()
            with frozen(list(self.model.weight_parameters())):
                loss, logits = self._loss(x_val, y_val)
                for a, g in zip(arch, torch.autograd.grad(loss, arch, allow_unused=True)):
                    a.grad = g
        else:
            loss, logits = self._unrolled_backward(x_train, y_train, x_val, y_val, w_lr, w_optimizer)
        self.average([a.grad for a in self.model.arch_parameters() if a.grad is not None])
        self.optimizer.step()
        return loss.detach(), logits.detach()

    def _unrolled_backward(self, x_train, y_train, x_val, y_val, xi: float, w_optimizer):
        arch = self.model.arch_parameters()
        weights = [p for p in self.model.weight_parameters() if p.requires_grad]
        original = [p.detach().clone() for p in weights]

        # w' = w - xi * (momentum buffer + dL_train/dw + weight decay * w), as SGD would step
        train_loss, _ = self._loss(x_train, y_train)
        grads = [torch.zeros_like(p) if g is None else g
                 for p, g in zip(weights, torch.autograd.grad(train_loss, weights, allow_unused=True))]
        self.average(grads)
        with torch.no_grad():
            for p, g in zip(weights, grads):
                step = self.w_weight_decay * p + g
                buffer = w_optimizer.state.get(p, {}).get("momentum_buffer")
                if buffer is not None:
                    step += self.w_momentum * buffer
                p.sub_(xi * step)

        # dL_val(w', alpha)/dalpha and v = dL_val(w', alpha)/dw'
        val_loss, logits = self._loss(x_val, y_val)
        grads = torch.autograd.grad(val_loss, arch + weights, allow_unused=True)
        d_alpha = [torch.zeros_like(a) if g is None else g for a, g in zip(arch, grads[:len(arch)])]
        vector = [torch.zeros_like(p) if g is None else g for p, g in zip(weights, grads[len(arch):])]
        self.average(vector)

        implicit = self._hessian_vector_product(weights, original, vector, x_train, y_train)
        for a, g, h in zip(arch, d_alpha, implicit):
            a.grad = g - xi * h
        return val_loss, logits

    def _hessian_vector_product(self, weights: list[torch.Tensor], original: list[torch.Tensor],
                                vector: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                                r: float = 0.01) -> list[torch.Tensor]:
        """``d^2 L_train / (dalpha dw) . v`` at ``w = original`` by central differences,
        ``eps = r / ||v||`` (the paper's ``r = 0.01``); leaves the weights at ``original``."""
        arch = self.model.arch_parameters()
        eps = r / float(torch.cat([v.flatten() for v in vector]).norm().clamp_min(1e-12))

        def grads_at(sign: float) -> list[torch.Tensor]:
            with torch.no_grad():
                for p, w, v in zip(weights, original, vector):
                    p.copy_(w).add_(v, alpha=sign * eps)
            loss, _ = self._loss(x, y)
            grads = torch.autograd.grad(loss, arch, allow_unused=True)
            return [torch.zeros_like(a) if g is None else g for a, g in zip(arch, grads)]

        grads_pos = grads_at(1.0)
        grads_neg = grads_at(-1.0)
        with torch.no_grad():
            for p, w in zip(weights, original):
                p.copy_(w)
        return [(gp - gn) / (2 * eps) for gp, gn in zip(grads_pos, grads_neg)]


@contextmanager
def frozen(params: list[torch.nn.Parameter]) -> Iterator[None]:
    """Build the graph without gradients for ``params``: the weight step needs none for the
    architecture (``weight * op_output`` then skips a full-size product and reduction per op),
    the first-order architecture step none for the weights."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
