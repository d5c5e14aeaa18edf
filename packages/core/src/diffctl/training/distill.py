"""The distillation objective: a student denoiser matches a frozen teacher's prediction.

The idea of training a small model on a large model's outputs rather than on the data alone
is Hinton et al. 2015 ("Distilling the Knowledge in a Neural Network"). Here it is plain
output matching of the denoiser: on the same noised input ``(x_t, t, cond)`` the student
regresses the teacher's output, in the prediction type both share (epsilon, x0 or v), not
progressive distillation of the sampler (Salimans & Ho 2022), which halves sampling steps.

For one example, with s the student's output, f the teacher's and y the data target::

    loss = w(t) * (weight * |s - f|^2 + (1 - weight) * |s - y|^2)

``w(t)`` is the same per-timestep weighting as the data loss
(:func:`diffctl.training.objective.snr_weight`). The teacher's output is the teacher's
estimate of E[y | x_t], so its target has less variance than y; with ``weight`` 1 a student
equal to its teacher has zero loss.

Class labels pass through to both models. A conditional student drops labels inside its own
forward (classifier-free guidance training); for those examples it regresses the teacher's
conditional output, whose average over the labels of x_t is the unconditional prediction, the
same expectation the data loss gives the null class.
"""

from __future__ import annotations

import torch

from diffctl.schedules.parametrization import target_from
from diffctl.training.objective import snr_weight


def distillation_loss(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    scheduler,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    cond: torch.Tensor | None = None,
    *,
    weight: float = 1.0,
    weighting: str = "uniform",
    gamma: float = 5.0,
    prediction: str | None = None,
) -> torch.Tensor:
    """Mean weighted squared error of the student against the teacher (and the data target).

    ``prediction`` defaults to ``student.prediction``; the teacher must predict the same
    quantity. The teacher runs without autograd, so gradients reach only the student; errors
    are taken in float32 even under bf16 autocast.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distillation weight must be in [0, 1], got {weight}")
    prediction = prediction or getattr(student, "prediction", "epsilon")
    teacher_prediction = getattr(teacher, "prediction", "epsilon")
    if teacher_prediction != prediction:
        raise ValueError(f"the teacher predicts {teacher_prediction!r} and the student "
                         f"{prediction!r}; distillation matches outputs of one type")
    x_t = scheduler.q_sample(x0, t, noise)
    a = scheduler.alpha_bar(t, x0)
    target = target_from(x0, noise, a, prediction)
    output = student(x_t, t, cond=cond).to(target.dtype)
    per_example = torch.zeros(output.shape[0], dtype=target.dtype, device=output.device)
    if weight > 0:
        with torch.no_grad():
            guide = teacher(x_t, t, cond=cond).to(target.dtype)
        per_example = per_example + weight * (output - guide).pow(2).flatten(1).mean(dim=1)
    if weight < 1:
        per_example = per_example + (1 - weight) * (output - target).pow(2).flatten(1).mean(1)
    snr = (a / (1 - a).clamp_min(1e-12)).flatten()
    return (snr_weight(snr, prediction, weighting, gamma) * per_example).mean()
