"""MDiT3D: shapes, factorised-attention locality, prompt injection per block, parameter counts, ablation diffusers."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from mribench.errors import MribenchError
from mribench_copedit.diffusers import build_diffuser
from mribench_copedit.mdit3d import (TOKEN_AXES, FactorisedAttention, MDiT3D, MDiT3DConfig, block_plan,
                                     count_trainable_parameters, patchify, sincos_features, sincos_grid_table,
                                     unpatchify)
from mribench_copedit.unet_diffuser import matched_levels

BRAIN_LATENT = (3, 4, 2, 4, 4)      # E modalities, c, d, h, w
CARDIAC_LATENT = (1, 4, 4, 4, 4)    # one volume, 4 latent slices
CARDIAC_SLICES = 32


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random O(1)-gain weights everywhere (adaLN-Zero starts at identity, which would hide every effect)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            fan_in = parameter.shape[-1] if parameter.ndim > 1 else 4
            parameter.copy_(torch.randn(parameter.shape, generator=generator) / fan_in ** 0.5)
    return model.eval()


def inputs(latent_shape, batch=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, *latent_shape, generator=generator)
    prompts = torch.randn(batch, 3, 512, generator=generator)
    return latents, torch.tensor([5, 400])[:batch], prompts


@pytest.mark.parametrize("diffuser", ["mdit3d", "dit", "dit3d", "unet3d"])
@pytest.mark.parametrize("layout,latent_shape", [("modal", BRAIN_LATENT), ("planar", CARDIAC_LATENT)])
def test_forward_shape_for_both_problems(diffuser, layout, latent_shape):
    model = build_diffuser(MDiT3DConfig(size="MDiT3D-T", layout=layout, diffuser=diffuser), latent_shape)
    latents, timesteps, prompts = inputs(latent_shape)
    out = model(latents, timesteps, prompts)
    assert out.shape == latents.shape and torch.isfinite(out).all()
    out.square().mean().backward()


@pytest.mark.parametrize("size,condition", [("MDiT3D-T", "prompts"), ("MDiT3D-XS", "mask"), ("MDiT3D-B", "none")])
@pytest.mark.parametrize("layout,latent_shape", [("modal", (4, 4, 8, 24, 24)), ("planar", (1, 4, 8, 24, 24))])
def test_the_unet_diffuser_is_sized_to_the_mdit3d_it_replaces(size, condition, layout, latent_shape):
    config = MDiT3DConfig(size=size, layout=layout, condition=condition, diffuser="unet3d")
    with torch.device("meta"):
        unet = build_diffuser(config, latent_shape, 4)
        transformer = build_diffuser(dataclasses.replace(config, diffuser="mdit3d"), latent_shape, 4)
    unet_parameters = sum(p.numel() for p in unet.unet.parameters())
    transformer_parameters = sum(p.numel() for p in transformer.parameters())
    assert 0.8 < unet_parameters / transformer_parameters < 1.25
    head = config.dims.hidden // config.dims.heads
    assert all(width % head == 0 for width in unet.widths[1:])
    assert matched_levels(config, latent_shape, 4) == (unet.widths, unet.residual_blocks)  # deterministic


def test_patchify_roundtrip_and_token_order_match_position_table():
    latents = torch.randn(2, 3, 4, 4, 6, 8)
    for patch in [(1, 1, 1), (2, 2, 2), (1, 2, 2)]:
        tokens = patchify(latents, patch)
        assert tokens.shape == (2, 3, (4 // patch[0]) * (6 // patch[1]) * (8 // patch[2]), 4 * patch[0] * patch[1]
                                * patch[2])
        assert torch.equal(unpatchify(tokens, patch, (3, 4, 4, 6, 8)), latents)
    # a latent whose value is its depth index: the token order must be the table's (d', h', w') order
    depth_index = torch.arange(4.0)[None, None, None, :, None, None].expand(1, 1, 1, 4, 6, 8)
    token_depth = patchify(depth_index, (1, 1, 1))[0, 0, :, 0]
    table = sincos_grid_table(48, (4, 6, 8))
    assert torch.allclose(table[:, :16], sincos_features(token_depth, 16))


def _block_outputs(model: MDiT3D, latent_shape, kind: str, perturb_at: tuple[int, int, int]):
    """Which outputs ``(E, d', h'w')`` of the first block of ``kind`` change when the token at (element, depth,
    plane) is perturbed: True = changed clearly, False = bit-identical, and anything in between fails."""
    block = next(block for block in model.blocks if block.kind == kind)
    elements = latent_shape[0]
    depth, height, width = model.grid
    generator = torch.Generator().manual_seed(3)
    tokens = torch.randn(1, elements, depth * height * width, model.config.dims.hidden, generator=generator)
    condition = torch.randn(1, model.config.dims.hidden, generator=generator)
    element, slice_index, in_plane = perturb_at
    perturbed = tokens.clone()
    # a random direction: a constant shift would vanish in the block's LayerNorm
    perturbed[0, element, slice_index * height * width + in_plane] += 3.0 * torch.randn(tokens.shape[-1],
                                                                                        generator=generator)
    with torch.no_grad():
        before = block(tokens, condition, model.grid).view(elements, depth, height * width, -1)
        after = block(perturbed, condition, model.grid).view(elements, depth, height * width, -1)
    change = (after - before).abs().amax(dim=-1)
    assert ((change == 0) | (change > 1e-4)).all(), "changes at rounding level: the test cannot tell locality"
    return change > 0


def test_brain_spatial_block_stays_within_its_modality():
    model = randomise(MDiT3D(MDiT3DConfig(size="MDiT3D-T", layout="modal"), BRAIN_LATENT))
    changed = _block_outputs(model, BRAIN_LATENT, "spatial", perturb_at=(1, 0, 0))
    assert not changed[0].any() and not changed[2].any()
    assert changed[1].all()      # attention spans the whole 3D volume of modality 1


def test_brain_modal_block_stays_at_its_position():
    model = randomise(MDiT3D(MDiT3DConfig(size="MDiT3D-T", layout="modal"), BRAIN_LATENT))
    changed = _block_outputs(model, BRAIN_LATENT, "modal", perturb_at=(1, 1, 2))
    expected = torch.zeros_like(changed)
    expected[:, 1, 2] = True     # every modality at that token position, nothing else
    assert torch.equal(changed, expected)


def test_cardiac_planar_block_stays_within_its_slice():
    model = randomise(MDiT3D(MDiT3DConfig(size="MDiT3D-T", layout="planar"), CARDIAC_LATENT))
    changed = _block_outputs(model, CARDIAC_LATENT, "planar", perturb_at=(0, 2, 5))
    expected = torch.zeros_like(changed)
    expected[0, 2, :] = True
    assert torch.equal(changed, expected)


def test_cardiac_spatial_block_attends_through_plane_only():
    model = randomise(MDiT3D(MDiT3DConfig(size="MDiT3D-T", layout="planar"), CARDIAC_LATENT))
    changed = _block_outputs(model, CARDIAC_LATENT, "spatial", perturb_at=(0, 2, 5))
    expected = torch.zeros_like(changed)
    expected[0, :, 5] = True
    assert torch.equal(changed, expected)


def test_full_attention_diffusers_attend_over_all_tokens():
    model = randomise(MDiT3D(MDiT3DConfig(size="MDiT3D-T", layout="modal", diffuser="dit3d"), BRAIN_LATENT))
    assert _block_outputs(model, BRAIN_LATENT, "full", perturb_at=(1, 0, 0)).all()


@pytest.mark.parametrize("layout,latent_shape,primary,secondary", [
    ("modal", BRAIN_LATENT, "modal", "spatial"), ("planar", CARDIAC_LATENT, "spatial", "planar")])
@pytest.mark.parametrize("inject", ["primary", "secondary", "both"])
def test_prompts_reach_only_the_injected_blocks(layout, latent_shape, primary, secondary, inject):
    model = randomise(MDiT3D(MDiT3DConfig(size="MDiT3D-T", layout=layout, inject=inject), latent_shape))
    kinds = [block.kind for block in model.blocks]
    assert kinds == [secondary, primary] * 2
    seen: list[torch.Tensor] = []
    hooks = [block.register_forward_pre_hook(lambda module, args: seen.append(args[1])) for block in model.blocks]
    latents, timesteps, prompts = inputs(latent_shape)
    with torch.no_grad():
        out_a = model(latents, timesteps, prompts)
        out_b = model(latents, timesteps, prompts.flip(0))
    for hook in hooks:
        hook.remove()
    injected = {"primary": {primary}, "secondary": {secondary}, "both": {primary, secondary}}[inject]
    for index, kind in enumerate(kinds):
        differs = not torch.equal(seen[index], seen[index + len(kinds)])
        assert differs == (kind in injected), (index, kind)
    assert not torch.allclose(out_a, out_b)


def test_mask_code_and_prompts_off_paths():
    mask_model = randomise(MDiT3D(MDiT3DConfig(size="MDiT3D-T", layout="planar", condition="mask"),
                                  CARDIAC_LATENT, mask_code_length=CARDIAC_SLICES))
    latents, timesteps, prompts = inputs(CARDIAC_LATENT)
    code_a = torch.ones(2, CARDIAC_SLICES)
    code_b = code_a.clone()
    code_b[:, 8:16] = 0
    with torch.no_grad():
        assert not torch.allclose(mask_model(latents, timesteps, mask_code=code_a),
                                  mask_model(latents, timesteps, mask_code=code_b))
    with pytest.raises(MribenchError, match="prompts given"):
        mask_model(latents, timesteps, prompts)
    with pytest.raises(MribenchError, match="expected \\(B, 32\\)"):
        mask_model(latents, timesteps, mask_code=torch.ones(2, 4))
    off = randomise(MDiT3D(MDiT3DConfig(size="MDiT3D-T", layout="planar", condition="none"), CARDIAC_LATENT))
    assert off(latents, timesteps).shape == latents.shape
    with pytest.raises(MribenchError, match="condition='none'"):
        off(latents, timesteps, prompts)


def test_fresh_model_predicts_zero_and_rejects_wrong_shapes():
    model = MDiT3D(MDiT3DConfig(size="MDiT3D-T", layout="modal"), BRAIN_LATENT)
    latents, timesteps, prompts = inputs(BRAIN_LATENT)
    assert torch.equal(model(latents, timesteps, prompts), torch.zeros_like(latents))   # adaLN-Zero final layer
    with pytest.raises(MribenchError, match="built for"):
        model(latents[:, :2], timesteps, prompts)
    with pytest.raises(MribenchError, match="not divisible"):
        MDiT3D(MDiT3DConfig(size="MDiT3D-B", layout="modal"), (4, 8, 3, 24, 24))
    with pytest.raises(MribenchError, match="inject"):
        MDiT3DConfig(inject="everywhere")


@pytest.mark.parametrize("size,layout,latent_shape,expected_millions", [
    ("MDiT3D-B", "modal", (4, 8, 8, 24, 24), 173.3),      # paper table, brain
    ("MDiT3D-C", "planar", (1, 8, 4, 24, 24), 33.0),      # paper table, cardiac (released 384-wide config)
    ("MDiT3D-C576", "planar", (1, 8, 4, 24, 24), 73.8),   # the authors' 576-wide patch-1 model
])
def test_paper_parameter_counts(size, layout, latent_shape, expected_millions):
    with torch.device("meta"):
        model = MDiT3D(MDiT3DConfig(size=size, layout=layout), latent_shape)
    assert count_trainable_parameters(model) == pytest.approx(expected_millions * 1e6, rel=0.01)
    assert len(block_plan(model.config)) == model.config.dims.depth


def reference_attention(attention: FactorisedAttention, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Factorised attention token group by token group: softmax(q k^T / sqrt(c)) v per head over the tokens that
    share every axis not attended over, written with explicit index lists."""
    batch, elements, tokens, hidden = x.shape
    heads, head_dim = attention.heads, attention.head_dim
    q, k, v = torch.nn.functional.linear(x, attention.qkv.weight, attention.qkv.bias).split(hidden, dim=-1)
    index = torch.arange(elements * tokens).reshape(elements, grid[0], grid[1] * grid[2])  # (e, d, p) -> flat
    held = [axis for axis in TOKEN_AXES if axis not in attention.attend_over]
    out = torch.zeros(batch, elements * tokens, hidden)
    for b in range(batch):
        flat = [t.reshape(elements * tokens, heads, head_dim) for t in (q[b], k[b], v[b])]
        for key in torch.cartesian_prod(*[torch.arange(index.shape[TOKEN_AXES.index(a)]) for a in held]).reshape(
                -1, len(held)) if held else [torch.zeros(0, dtype=torch.long)]:
            picked = index
            for axis in reversed(TOKEN_AXES):  # fix the held axes, keep the attended ones
                if axis in held:
                    picked = picked.select(TOKEN_AXES.index(axis), key[held.index(axis)])
            members = picked.reshape(-1)
            for h in range(heads):
                qh, kh, vh = (t[members, h] for t in flat)
                weights = torch.softmax(qh @ kh.T / head_dim ** 0.5, dim=-1)
                out[b, members, h * head_dim:(h + 1) * head_dim] = weights @ vh
    return attention.proj(out.reshape(batch, elements, tokens, hidden))


@pytest.mark.parametrize("attend_over", [("depth", "plane"), ("element",), ("plane",), ("depth",), TOKEN_AXES])
def test_factorised_attention_matches_a_per_group_reference(attend_over):
    torch.manual_seed(0)
    attention = randomise(FactorisedAttention(24, 4, attend_over))
    grid = (2, 3, 2)
    x = torch.randn(2, 3, 12, 24)
    with torch.no_grad():
        torch.testing.assert_close(attention(x, grid), reference_attention(attention, x, grid), atol=1e-5, rtol=1e-5)


def test_state_dict_names_and_shapes_are_pinned():
    """Committed checkpoints load with strict=True only while parameter names and shapes stay as they are."""
    model = MDiT3D(MDiT3DConfig(size="MDiT3D-T", layout="modal"), (3, 4, 2, 4, 4))
    hidden, patch_dim = 48, 4
    expected = {"element_embed": (3, hidden), "patch_embed.weight": (hidden, patch_dim), "patch_embed.bias": (hidden,),
                "t_embedder.mlp.0.weight": (hidden, 256), "t_embedder.mlp.0.bias": (hidden,),
                "t_embedder.mlp.2.weight": (hidden, hidden), "t_embedder.mlp.2.bias": (hidden,),
                "prompt_embedder.proj.weight": (hidden, 3 * 512), "prompt_embedder.proj.bias": (hidden,),
                "final_layer.modulation.1.weight": (2 * hidden, hidden), "final_layer.modulation.1.bias": (2 * hidden,),
                "final_layer.linear.weight": (patch_dim, hidden), "final_layer.linear.bias": (patch_dim,)}
    for block in range(4):
        expected |= {f"blocks.{block}.{name}": shape for name, shape in {
            "attn.qkv.weight": (3 * hidden, hidden), "attn.qkv.bias": (3 * hidden,),
            "attn.proj.weight": (hidden, hidden), "attn.proj.bias": (hidden,),
            "mlp.0.weight": (4 * hidden, hidden), "mlp.0.bias": (4 * hidden,),
            "mlp.2.weight": (hidden, 4 * hidden), "mlp.2.bias": (hidden,),
            "modulation.1.weight": (6 * hidden, hidden), "modulation.1.bias": (6 * hidden,)}.items()}
    assert {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()} == expected
