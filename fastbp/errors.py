"""fastbp's own exceptions."""

from __future__ import annotations


class DivergenceError(FloatingPointError, ValueError):
    """Training diverged: a loss or a parameter became NaN or ±inf.

    A ``FloatingPointError`` and a ``ValueError`` (what scikit-learn's MLP estimators
    raise for a diverged fit, so ``except ValueError`` catches both).

    Raised by :meth:`fastbp.MLP.fit` (and the ``train_epoch`` functions) as soon as
    the step that would diverge is found; that step is not applied, so the
    network keeps the parameters it had just before it.

    Attributes
    ----------
    epoch
        The epoch (counting from 0) in which it happened, or ``None`` when unknown.
    batch
        The batch within the epoch (counting from 0).

    ``message``, where given, leads the text and fastbp's own account follows it in
    parentheses (the estimators lead with scikit-learn's message).
    """

    def __init__(self, batch: int, epoch: int | None = None, detail: str = "", message: str = ""):
        self.batch = int(batch)
        self.epoch = epoch
        # counted from 0, as the attributes (a command line's "epoch 1/10" lines count from 1: say so)
        where = (
            f"epoch {epoch}, batch {batch} (both counted from 0)" if epoch is not None else f"batch {batch} (from 0)"
        )
        text = (
            f"training diverged at {where}: the loss or an updated parameter is not finite"
            f"{' (' + detail + ')' if detail else ''}; the parameters are those from before that "
            "step. Try a smaller learning_rate or scaled inputs."
        )
        super().__init__(f"{message} ({text})" if message else text)
