"""Gaussian diffusion: schedule, noise on missing latents only, masked x0 loss, DDIM re-imposition and determinism,
and a tiny MDiT3D that learns a toy latent completion problem."""
from __future__ import annotations

import copy

import pytest
import torch

from mribench.errors import MribenchError
from mribench_copedit.diffusion import GaussianDiffusion, expand_availability
from mribench_copedit.mdit3d import MDiT3D, MDiT3DConfig

BRAIN_AVAILABILITY = torch.tensor([[True, False, True], [False, True, True]])          # (B, E)
CARDIAC_AVAILABILITY = torch.tensor([[[True, False, False, True]], [[False, True, True, True]]])  # (B, 1, d)


def latents(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_schedule_is_scaled_linear_with_paper_endpoints():
    diffusion = GaussianDiffusion()
    betas = diffusion.scheduler.betas.double()
    assert diffusion.num_timesteps == 500 and betas.shape == (500,)
    assert betas[0].item() == pytest.approx(0.0015) and betas[-1].item() == pytest.approx(0.0195)
    assert torch.allclose(betas.sqrt().diff(), betas.sqrt().diff()[0].expand(499), atol=1e-7)
    timesteps = diffusion.ddim_timesteps(200)
    assert timesteps[0] == 499 and timesteps[-1] == 0 and (timesteps.diff() < 0).all()


@pytest.mark.parametrize("shape,availability", [((2, 3, 2, 2, 4, 4), BRAIN_AVAILABILITY),
                                                ((2, 1, 2, 4, 4, 4), CARDIAC_AVAILABILITY)])
def test_noise_only_on_missing_latents(shape, availability):
    diffusion = GaussianDiffusion()
    x0 = latents(shape)
    x_t = diffusion.q_sample(x0, availability, torch.tensor([250, 499]), latents(shape, seed=1))
    available = expand_availability(availability, shape).expand(shape)
    assert torch.equal(x_t[available], x0[available])
    assert ((x_t - x0)[~available].abs() > 0).all()


def test_missing_only_loss_counts_only_missing_latents_and_model_sees_clean_available():
    diffusion = GaussianDiffusion()
    shape = (2, 3, 2, 2, 4, 4)
    x0 = latents(shape)
    available = expand_availability(BRAIN_AVAILABILITY, shape).expand(shape)
    seen = {}

    def oracle_on_missing(x_t, timesteps):
        seen["x_t"], seen["t"] = x_t, timesteps
        return torch.where(available, x0 + 100.0, x0)   # wrong only where available

    loss = diffusion.training_loss(oracle_on_missing, x0, BRAIN_AVAILABILITY, torch.Generator().manual_seed(0),
                                   missing_only=True)
    assert loss.item() == 0.0
    assert torch.equal(seen["x_t"][available], x0[available]) and seen["t"].shape == (2,)
    wrong = diffusion.training_loss(lambda x_t, t: torch.where(available, x0, x0 + 2.0), x0, BRAIN_AVAILABILITY,
                                    missing_only=True)
    assert wrong.item() == pytest.approx(4.0)


def test_default_loss_is_the_joint_objective_over_all_latents():
    """The paper's Eq. 5: errors on available latents count too (the default), averaged over every latent."""
    diffusion = GaussianDiffusion()
    shape = (2, 3, 2, 2, 4, 4)
    x0 = latents(shape)
    available = expand_availability(BRAIN_AVAILABILITY, shape).expand(shape)
    loss = diffusion.training_loss(lambda x_t, t: torch.where(available, x0 + 2.0, x0), x0, BRAIN_AVAILABILITY)
    assert loss.item() == pytest.approx(4.0 * available.float().mean().item())


def test_availability_shapes_are_checked():
    with pytest.raises(MribenchError, match="slices"):
        expand_availability(torch.ones(2, 1, 3, dtype=torch.bool), (2, 1, 8, 4, 4, 4))
    with pytest.raises(MribenchError, match="does not fit"):
        expand_availability(torch.ones(2, 4, dtype=torch.bool), (2, 3, 8, 4, 4, 4))


def test_ddim_keeps_observed_latents_and_is_deterministic():
    diffusion = GaussianDiffusion()
    shape = (2, 1, 2, 4, 4, 4)
    target = latents(shape)
    available = expand_availability(CARDIAC_AVAILABILITY, shape)
    observed = target * available
    def drifting_model(x_t, timesteps):   # changes every latent, observed ones included
        return x_t * 0.5 + 1.0

    def sample(seed):
        return diffusion.ddim_sample(drifting_model, observed, CARDIAC_AVAILABILITY, steps=7,
                                     generator=torch.Generator().manual_seed(seed))

    first, again, other = sample(0), sample(0), sample(1)
    mask = available.expand(shape)
    assert torch.equal(first[mask], target[mask])
    assert torch.equal(first, again)
    assert not torch.equal(first[~mask], other[~mask])
    oracle = diffusion.ddim_sample(lambda x_t, t: target, observed, CARDIAC_AVAILABILITY, steps=5)
    assert torch.allclose(oracle, target)


def test_tiny_model_learns_toy_completion_better_than_untrained_copy():
    """Toy brain latents: three elements that are fixed transforms of one shared random field."""
    torch.manual_seed(0)
    shape = (3, 2, 1, 4, 4)
    diffusion = GaussianDiffusion()
    model = MDiT3D(MDiT3DConfig(size="MDiT3D-T", layout="modal", condition="none"), shape)
    untrained = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(1)

    def toy_batch(batch):
        field = torch.randn(batch, 1, *shape[1:], generator=generator)
        x0 = torch.cat([field, -field, 0.5 * field.flip(-1)], dim=1)
        missing = torch.randint(0, 3, (batch,), generator=generator)
        availability = torch.ones(batch, 3, dtype=torch.bool)
        availability[torch.arange(batch), missing] = False
        return x0, availability

    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(50):
        x0, availability = toy_batch(8)
        loss = diffusion.training_loss(lambda x_t, t: model(x_t, t), x0, availability, generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    x0, availability = toy_batch(16)
    observed = x0 * availability[:, :, None, None, None, None]
    missing = ~expand_availability(availability, x0.shape).expand(x0.shape)

    def error(net):
        net.eval()
        sample = diffusion.ddim_sample(lambda x_t, t: net(x_t, t), observed, availability, steps=5,
                                       generator=torch.Generator().manual_seed(2))
        return (sample - x0)[missing].square().mean().item()

    assert error(model) < 0.6 * error(untrained)
