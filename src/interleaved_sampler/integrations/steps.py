"""Framework counters in the schedule's terms: optimizer steps under gradient accumulation.

Lightning and the Hugging Face ``Trainer`` both count optimizer steps (``global_step``) and
step after every ``accumulation`` training batches and after the last batch of each epoch,
so an epoch of ``U`` batches has ``ceil(U / accumulation)`` steps, the last one short when
``U`` is not a multiple. The schedule counts batches (updates); these functions translate.
"""

from __future__ import annotations


def steps_per_epoch(updates_per_epoch: int, accumulation: int) -> int:
    """Optimizer steps in an epoch of ``updates_per_epoch`` training batches.

    Example:
        >>> steps_per_epoch(10, 4)  # 4 + 4 + 2 batches
        3
    """
    return -(-updates_per_epoch // accumulation)


def update_of_step(step: int, updates_per_epoch: int, accumulation: int) -> int:
    """The training batches done when optimizer step ``step`` (counted from 1) completes.

    Example:
        >>> [update_of_step(step, 10, 4) for step in range(1, 7)]  # epochs of 4 + 4 + 2
        [4, 8, 10, 14, 18, 20]
    """
    epoch, step_in_epoch = divmod(step - 1, steps_per_epoch(updates_per_epoch, accumulation))
    return epoch * updates_per_epoch + min((step_in_epoch + 1) * accumulation, updates_per_epoch)
