"""CoPeDiT diffuser check: where a trained stage-II diffuser's error on the missing latents comes from, on validation
subjects, without retraining. A diagnostic of the diffuser ablation (``copedit`` against ``copedit-unet``,
``copedit-dit``, ``copedit-dit3d``), not a method change.

For each model (``METHOD:SEED``) it prints one JSON line with, on the missing latents of every validation subject
under its evaluation pattern (latents scaled as stage II trains them; their variance is ``missing_variance``):
- ``x0_mse_at_t``: the MSE of the diffuser's one-step x0 prediction from ``x_t`` at a few timesteps (t = 499 is
  pure noise on the missing latents: only the observed elements can tell the diffuser what to predict);
- ``ddim_mse``: the MSE of DDIM's final x0 (the synthesis path: the preset's steps, observed latents held fixed);
- for the transformer diffusers with full attention over all tokens (``dit``, ``dit3d``), ``same_position_mass``:
  per block, the mean attention weight a query token of the missing element puts on the tokens at its own position
  in the other elements, against ``uniform_same_position_mass``, the weight that spreading attention evenly over all
  tokens would put there. MDiT3D's Modal blocks attend over exactly those tokens by construction.

Usage: python benchmarks/copedit_diffuser_check.py TASK RUNS METHOD:SEED [METHOD:SEED ...]
e.g.   python benchmarks/copedit_diffuser_check.py phantom-brats-missing1 runs/leaderboard copedit:1 copedit-dit3d:0
       python benchmarks/copedit_diffuser_check.py --table LINES.jsonl   (the printed lines as a markdown table)

RUNS is a runs folder in which ``mribench run`` trained each METHOD at the cpu preset with that seed. Test subjects
are never read.
"""
import json
import math
import sys
from functools import partial

import numpy as np
import torch

from mribench.data import load_task_data
from mribench.plugins import registry
from mribench.protocol import infer_availability
from mribench.runner import RunRequest, evaluation_batch, plan
from mribench_copedit.analysis import attention_probabilities
from mribench_copedit.diffusers import conditioning
from mribench_copedit.diffusion import GaussianDiffusion, expand_availability

TIMESTEPS = (499, 250, 100, 20)


def same_position_masses(network, x_t: torch.Tensor, timesteps: torch.Tensor, inputs: dict, absent: int
                         ) -> list[float]:
    """Per block of a full-attention diffuser, the mean weight a query token of element ``absent`` puts on the tokens
    at its own position in the other elements, in one forward pass from ``x_t`` (hooks removed after it)."""
    elements, tokens = network.latent_shape[0], math.prod(network.grid)
    weights: dict[int, torch.Tensor] = {}
    hooks = [block.attn.register_forward_pre_hook(  # (E * N, E * N) weights of the batch of one, mean over heads
        lambda module, args, index=index: weights.__setitem__(index, attention_probabilities(module, *args)[0].mean(0)))
        for index, block in enumerate(network.blocks)]
    try:
        network(x_t, timesteps, **inputs)
    finally:
        for hook in hooks:
            hook.remove()
    diagonal = torch.arange(tokens)
    masses = []
    for index in range(len(network.blocks)):
        per_query = weights[index].reshape(elements, tokens, elements, tokens)[absent]
        masses.append(float(sum(per_query[diagonal, other, diagonal].mean()
                                for other in range(elements) if other != absent)))
    return masses


def check(task_name: str, runs: str, method_name: str, seed: int) -> dict:
    the_plan = plan(RunRequest(method=method_name, task=task_name, preset="cpu", seed=seed, out=runs))
    data = load_task_data(the_plan.task, registry().dataset(the_plan.task.dataset), None)
    checkpoint = the_plan.model_root(data) / method_name / f"cpu-seed{seed}" / "model.pt"
    method = the_plan.method_cls.load(checkpoint, the_plan.config, seed, the_plan.task)
    network, tokenizer, scale = method.network, method.tokenizer, method.latent_scale
    diffusion_cfg = method.config.for_problem(method.problem).diffusion
    full_attention = diffusion_cfg.diffuser in ("dit", "dit3d")
    diffusion = GaussianDiffusion()
    x0_errors = {t: [] for t in TIMESTEPS}
    ddim_errors, variances = [], []
    same_position = {index: [] for index in range(len(network.blocks))} if full_attention else {}
    for number, subject in enumerate(data.validation):
        batch = evaluation_batch(the_plan.task, subject)
        image, complete = batch.image.float(), torch.from_numpy(np.array(subject.image, dtype=np.float32))[None]
        observed = infer_availability(image, method.problem)
        available_latents, availability = tokenizer.available_latents(image)
        x0 = tokenizer.encode(complete) / scale
        missing = ~expand_availability(availability, x0.shape).expand_as(x0)
        inputs = conditioning(tokenizer, available_latents, observed, diffusion_cfg, method.problem)
        generator = torch.Generator().manual_seed(number)
        variances.append(float(x0[missing].var()))
        for t in TIMESTEPS:
            x_t = diffusion.q_sample(x0, availability, torch.tensor([t]), torch.randn(x0.shape, generator=generator))
            x0_errors[t].append(float((network(x_t, torch.tensor([t]), **inputs) - x0)[missing].square().mean()))
            if full_attention and t == TIMESTEPS[0] and method.problem == "missing-modality":
                absent = int((~observed[0, :, 0]).nonzero()[0])  # the first missing modality's queries
                masses = same_position_masses(network, x_t, torch.tensor([t]), inputs, absent)
                for index, mass in enumerate(masses):
                    same_position[index].append(mass)
        sampled = diffusion.ddim_sample(partial(network, **inputs), available_latents / scale, availability,
                                        diffusion_cfg.sample_steps, generator)
        ddim_errors.append(float((sampled - x0)[missing].square().mean()))
    line = {"task": task_name, "method": method_name, "seed": seed, "diffuser": diffusion_cfg.diffuser,
            "validation_subjects": len(data.validation), "missing_variance": round(float(np.mean(variances)), 4),
            "x0_mse_at_t": {t: round(float(np.mean(errors)), 4) for t, errors in x0_errors.items()},
            "ddim_mse": round(float(np.mean(ddim_errors)), 4)}
    if full_attention and method.problem == "missing-modality":
        line["same_position_mass"] = [round(float(np.mean(masses)), 5) for masses in same_position.values()]
        elements = network.latent_shape[0]
        line["uniform_same_position_mass"] = round((elements - 1) / (elements * math.prod(network.grid)), 5)
    return line


def markdown_table(lines: list[dict]) -> str:
    """The lines as one markdown table, MDiT3D first, then as ``DIFFUSER_NAMES`` orders the diffusers, by seed."""
    from mribench_copedit.presets import DIFFUSER_NAMES

    order = list(DIFFUSER_NAMES)
    head = ("| method | seed | diffuser | variance of the missing latents | "
            + " | ".join(f"x0 MSE, t = {t}" for t in TIMESTEPS)
            + " | DDIM x0 MSE | same-position attention, per block (uniform) |")
    rows = [head, "|---|---:|---|" + "---:|" * (len(TIMESTEPS) + 2) + "---|"]
    for line in sorted(lines, key=lambda line: (order.index(line["diffuser"]), line["method"], line["seed"])):
        masses = line.get("same_position_mass")
        attention = (f"{' / '.join(f'{mass:.5f}' for mass in masses)} ({line['uniform_same_position_mass']:.5f})"
                     if masses else "–")
        rows.append(f"| {line['method']} | {line['seed']} | {DIFFUSER_NAMES[line['diffuser']]} | "
                    f"{line['missing_variance']:.3f} | "
                    + " | ".join(f"{line['x0_mse_at_t'][str(t)]:.3f}" for t in TIMESTEPS)
                    + f" | {line['ddim_mse']:.3f} | {attention} |")
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        with open(sys.argv[2]) as handle:
            print(markdown_table([json.loads(text) for text in handle if text.strip()]))
        sys.exit()
    task_arg, runs_arg = sys.argv[1], sys.argv[2]
    with torch.no_grad():
        for model in sys.argv[3:]:
            name, seed_text = model.rsplit(":", 1)
            print(json.dumps(check(task_arg, runs_arg, name, int(seed_text))), flush=True)
