"""CoPeDiT's analyses (``mribench analyze prompts|tokenizer``): the paper's prompt analyses and tokenizer ablation.

``prompts`` reads a trained CoPeDiT (or a variant conditioned on prompts) on the task's TEST subjects, each with the
protocol's evaluation pattern and synthesized under the runner's seed (so the unmodified synthesis is the run's own
prediction, and every PSNR below is comparable with the run's result):

* corruption curves: for each of count / position / assessment / all prompts and each fraction of
  ``CORRUPTION_FRACTIONS``, that fraction of the subjects (rounded; nested sets: a larger fraction adds subjects) get
  the prompt(s) of another test subject (a seeded cyclic donor order, never themselves); PSNR against the fraction;
* interventions: prompts zeroed, random of matched norm (per subject and prompt), shuffled across subjects, and two
  prompt types swapped with each other;
* t-SNE (scikit-learn) of the prompt vectors of every test subject under many missing patterns of the training range,
  coloured by missing count and by missing modality set (brain) or run start (cardiac);
* attention maps of the blocks that receive the prompts (Modal blocks for brain: modality × modality; cardiac Spatial
  blocks: latent slice × latent slice), averaged over heads, token positions and DDIM steps, for one subject and one
  missing configuration (``--subject`` / ``--missing``; default: the first test subject, its evaluation pattern).

A subject whose prompts an edit leaves unchanged keeps its unmodified PSNR (its synthesis would be the same tensor:
same seed, same inputs). Every edit is drawn from generators seeded by (seed, task): reruns give the same files.

``tokenizer`` trains CoPeVAE with each pretext task removed (its loss weight 0) and with all removed, beside the full
tokenizer CoPeDiT uses (read from the shared folder, trained there when absent), and reports reconstruction
PSNR / SSIM and pretext accuracies on the VALIDATION subjects (never test: it is a model-selection table).
"""
from __future__ import annotations

import csv
import itertools
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from mribench.analyze import Analysis, AnalysisContext, AnalysisTable, AnalysisTableRow
from mribench.atomic import atomic_path
from mribench.errors import MribenchError
from mribench.progress import progress_task
from mribench.protocol import availability_from_missing, seeded_rng
from mribench_copedit.data import TrainImages
from mribench_copedit.mdit3d import TOKEN_AXES, FactorisedAttention
from mribench_copedit.method import CoPeDiT
from mribench_copedit.presets import PROMPT_NAMES
from mribench_copedit.prompts import mask_latents
from mribench_copedit.stage1 import tokenizer_folder, tokenizer_report, train_tokenizer

CORRUPTION_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.5)
CORRUPTED_PROMPTS = {**{name: (index,) for index, name in enumerate(PROMPT_NAMES)}, "all": (0, 1, 2)}
SWAPS = tuple(itertools.combinations(PROMPT_NAMES, 2))
CARDIAC_TSNE_STARTS = 3  # seeded run starts per subject and missing count (brain: every pattern of the range)
PRIMARY_KIND = {"missing-modality": "modal", "missing-slice": "spatial"}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with atomic_path(path, suffix=".csv") as temporary, temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return path


def _save_figure(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png", dpi=100, facecolor="white", bbox_inches="tight")
    plt.close(figure)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c])
                                       for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _copedit_reason(method_cls: type) -> str | None:
    if not (isinstance(method_cls, type) and issubclass(method_cls, CoPeDiT)):
        return "it reads CoPeDiT's CoPeVAE (copedit or one of its copedit-* variants)"
    return None


# -- prompt edits (pure functions of the prompts (N, 3, P) and a generator) --------------------------------------
def cyclic_donors(order: np.ndarray) -> np.ndarray:
    """donor[i] for every subject: the next subject in ``order`` (cyclic), never ``i`` itself when N ≥ 2."""
    donors = np.empty_like(order)
    donors[order] = np.roll(order, -1)
    return donors


def corrupt(prompts: torch.Tensor, tokens: tuple[int, ...], replaced: np.ndarray, donors: np.ndarray
            ) -> torch.Tensor:
    """``prompts`` with the ``tokens`` of the subjects ``replaced`` taken from their donors."""
    edited = prompts.clone()
    for index in replaced:
        edited[index, list(tokens)] = prompts[donors[index], list(tokens)]
    return edited


def interventions(prompts: torch.Tensor, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """The paper's interventions: zeroed, random of matched norm, shuffled across subjects, type-swapped."""
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    noise = torch.randn(prompts.shape, generator=generator, dtype=prompts.dtype)
    norms = prompts.norm(dim=-1, keepdim=True)
    edits = {"zeroed": torch.zeros_like(prompts),
             "random (matched norm)": noise / noise.norm(dim=-1, keepdim=True).clamp_min(1e-12) * norms,
             "shuffled across subjects": prompts[torch.from_numpy(cyclic_donors(rng.permutation(len(prompts))))]}
    for first, second in SWAPS:
        i, j = PROMPT_NAMES.index(first), PROMPT_NAMES.index(second)
        order = list(range(len(PROMPT_NAMES)))
        order[i], order[j] = j, i
        edits[f"swap {first}<->{second}"] = prompts[:, order]
    return edits


# -- attention of the conditioned blocks ----------------------------------------------------------------------
def attention_probabilities(attention: FactorisedAttention, x: torch.Tensor, grid: tuple[int, int, int]
                            ) -> torch.Tensor:
    """Softmax weights of a factorised attention block, recomputed from the module's own QKV projection:
    ``(B, *others, heads, L, L)``, L = the attended token axes flattened in ``TOKEN_AXES`` order, ``others`` = the
    remaining token axes (which act as batch). E.g. ``(B, d, p, heads, E, E)`` for a Modal block over ``(B, E, d * p,
    C)`` tokens, ``(B, heads, E * d * p, E * d * p)`` for a full-attention (DiT) block."""
    batch, elements, _, _ = x.shape
    depth, plane = grid[0], grid[1] * grid[2]
    qkv = attention.qkv(x).view(batch, elements, depth, plane, 3, attention.heads, attention.head_dim)
    attended = [1 + TOKEN_AXES.index(axis) for axis in attention.attend_over]
    others = [axis for axis in (1, 2, 3) if axis not in attended]

    def sequences(part: torch.Tensor) -> torch.Tensor:  # (B, E, D, P, heads, hd) -> (B, *others, heads, L, hd)
        arranged = part.permute(0, *others, 4, *attended, 5)
        return arranged.flatten(2 + len(others), 1 + len(others) + len(attended))

    q, k = (sequences(qkv[..., index, :, :]) for index in (0, 1))
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(attention.head_dim), dim=-1)


class AttentionRecorder:
    """Forward pre-hooks on the blocks of ``kind`` that accumulate their mean L × L attention map (over batch,
    token positions, heads and calls: every DDIM step)."""

    def __init__(self, network: torch.nn.Module, kind: str):
        self.blocks = [(index, block) for index, block in enumerate(getattr(network, "blocks", []))
                       if getattr(block, "kind", None) == kind and len(block.attn.attend_over) == 1]
        self.sums: dict[int, torch.Tensor] = {}
        self.calls: dict[int, int] = {}
        self.handles = []

    def __enter__(self) -> AttentionRecorder:
        for index, block in self.blocks:
            self.handles.append(block.attn.register_forward_pre_hook(
                lambda module, args, index=index: self._record(index, module, *args)))
        return self

    def _record(self, index: int, module: FactorisedAttention, x: torch.Tensor, grid) -> None:
        weights = attention_probabilities(module, x, grid).mean(dim=(0, 1, 2, 3))
        self.sums[index] = self.sums.get(index, 0) + weights
        self.calls[index] = self.calls.get(index, 0) + 1

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()

    def maps(self) -> dict[int, torch.Tensor]:
        return {index: self.sums[index] / self.calls[index] for index in sorted(self.sums)}


def attention_title(problem: str, subject_id: str, missing: str) -> str:
    """The attention figure's title: the subject and what it misses (``--missing``'s words)."""
    what = "modalities" if problem == "missing-modality" else "slices"
    return f"{subject_id}: missing {what} {missing} (mean over heads, positions, DDIM steps)"


# -- the prompt analysis --------------------------------------------------------------------------------------
class PromptAnalysis(Analysis):
    """Corruption curves, interventions, t-SNE and attention maps of CoPeDiT's prompts (test subjects)."""

    name: ClassVar[str] = "prompts"
    summary: ClassVar[str] = "CoPeDiT's prompts: corruption curves, interventions, t-SNE, attention maps (test subjects)"
    split: ClassVar[str] = "test"
    focus: ClassVar[str] = "the attention maps"

    @classmethod
    def unsupported_reason(cls, method_cls: type, config: Any) -> str | None:
        reason = _copedit_reason(method_cls)
        if reason is None and config.brain.diffusion.condition != "prompts":
            reason = f"its diffuser is conditioned on {config.brain.diffusion.condition!r}, not on prompts"
        return reason

    def run(self, context: AnalysisContext) -> list[Path]:
        method: CoPeDiT = context.method
        task = context.task
        subjects = [context.data.test[i] for i in range(len(context.data.test))]
        if len(subjects) < 2:
            raise MribenchError(f"task {task.name}: the prompt analyses need at least 2 test subjects")
        batches = [context.batch(subject) for subject in subjects]
        prompts = torch.cat([method.prompts_of(batch) for batch in batches])
        n = len(subjects)
        syntheses = n * (1 + 3 + len(SWAPS)) + len(CORRUPTED_PROMPTS) * sum(round(f * n) for f in CORRUPTION_FRACTIONS)
        with progress_task(context.progress, "prompt analysis: syntheses", syntheses) as advance:
            score = self._scorer(context, method, subjects, batches, prompts, advance)
            baseline = score(prompts)
            written = self._corruption(context, prompts, score, baseline)
            written += self._interventions(context, prompts, score, baseline)
            advance(syntheses - score.done)  # edits equal to a subject's own prompts reuse its synthesis
        context.say("analysis prompts: t-SNE of the prompts and the attention maps")
        written += self._tsne(context, method, subjects)
        written += self._attention(context, method)
        context.say(f"analysis prompts: {len(subjects)} test subjects of {task.name}, unmodified PSNR "
                    f"{np.mean(baseline):.3f} dB (the run's own)")
        return written

    @staticmethod
    def _scorer(context: AnalysisContext, method: CoPeDiT, subjects, batches, prompts: torch.Tensor,
                advance: Callable[..., None]) -> Callable[[torch.Tensor], list[float]]:
        """edited prompts (N, 3, P) → per-subject PSNR; unchanged subjects reuse their unmodified value. The
        returned function counts its syntheses in ``.done`` and reports each to ``advance``."""
        unmodified: list[float | None] = [None] * len(subjects)

        def one(index: int, edited: torch.Tensor | None) -> float:
            subject, batch = subjects[index], batches[index]
            torch.manual_seed(context.synthesis_seed(subject.subject_id))
            output = method.synthesize(batch) if edited is None else method.synthesize_with_prompts(batch, edited)
            score.done += 1
            advance()
            return context.missing_psnr(subject, batch, output)

        def score(edited: torch.Tensor) -> list[float]:
            values = []
            for index in range(len(subjects)):
                if torch.equal(edited[index], prompts[index]):
                    if unmodified[index] is None:
                        unmodified[index] = one(index, None)
                    values.append(unmodified[index])
                else:
                    values.append(one(index, edited[index:index + 1]))
            return values

        score.done = 0
        return score

    def _corruption(self, context, prompts, score, baseline) -> list[Path]:
        rng = seeded_rng("copedit-prompt-corruption", context.seed, context.task.name)
        n = len(prompts)
        rows = []
        for kind, tokens in CORRUPTED_PROMPTS.items():
            order = rng.permutation(n)
            donors = cyclic_donors(rng.permutation(n))
            for fraction in CORRUPTION_FRACTIONS:
                replaced = order[:int(round(fraction * n))]
                values = score(corrupt(prompts, tokens, replaced, donors)) if len(replaced) else baseline
                rows.append({"prompt": kind, "fraction": fraction, "replaced_subjects": len(replaced),
                             "psnr_mean": float(np.mean(values)), "psnr_std": float(np.std(values)),
                             "psnr_change": float(np.mean(values) - np.mean(baseline)), "subjects": n})
        plt = _pyplot()
        figure, axis = plt.subplots(figsize=(5, 3.5))
        for kind in CORRUPTED_PROMPTS:
            points = [(r["fraction"], r["psnr_mean"]) for r in rows if r["prompt"] == kind]
            axis.plot(*zip(*points), marker="o", label=kind)
        axis.set(xlabel="fraction of subjects with another subject's prompt", ylabel="PSNR (dB), missing elements",
                 title=f"{context.method_cls.name} prompt corruption, {context.task.name} (test)")
        axis.legend()
        return [_write_csv(context.output / "corruption.csv", rows),
                _save_figure(figure, context.output / "corruption.png"),
                _write_text(context.output / "corruption.md",
                            _markdown(rows, ["prompt", "fraction", "replaced_subjects", "psnr_mean", "psnr_change"])),
                AnalysisTable(
                    key="prompt-corruption",
                    title="Prompt corruption: PSNR (dB) with a fraction of the test subjects given another subject's "
                          "prompt(s)",
                    columns=[(f"{fraction:g}", f"{fraction:g}") for fraction in CORRUPTION_FRACTIONS],
                    rows=[AnalysisTableRow(kind, {f"{r['fraction']:g}": r["psnr_mean"] for r in rows
                                                  if r["prompt"] == kind}) for kind in CORRUPTED_PROMPTS],
                    note="rows: the prompt(s) replaced; columns: the fraction of test subjects whose prompt(s) come "
                         "from another test subject; the paper finds PSNR falls with the fraction, most for position"
                ).write(context.output)]

    def _interventions(self, context, prompts, score, baseline) -> list[Path]:
        rng = seeded_rng("copedit-prompt-interventions", context.seed, context.task.name)
        rows = [{"intervention": "none", "psnr_mean": float(np.mean(baseline)), "psnr_std": float(np.std(baseline)),
                 "psnr_change": 0.0, "subjects": len(prompts)}]
        for name, edited in interventions(prompts, rng).items():
            values = score(edited)
            rows.append({"intervention": name, "psnr_mean": float(np.mean(values)), "psnr_std": float(np.std(values)),
                         "psnr_change": float(np.mean(values) - np.mean(baseline)), "subjects": len(prompts)})
        plt = _pyplot()
        figure, axis = plt.subplots(figsize=(6, 3.5))
        axis.barh([r["intervention"] for r in rows], [r["psnr_mean"] for r in rows],
                  xerr=[r["psnr_std"] for r in rows])
        axis.set(xlabel="PSNR (dB), missing elements", title=f"prompt interventions, {context.task.name} (test)")
        axis.invert_yaxis()
        return [_write_csv(context.output / "interventions.csv", rows),
                _save_figure(figure, context.output / "interventions.png"),
                _write_text(context.output / "interventions.md",
                            _markdown(rows, ["intervention", "psnr_mean", "psnr_std", "psnr_change"])),
                AnalysisTable(
                    key="prompt-interventions", title="Prompt interventions: PSNR (dB) on the test subjects",
                    columns=[("psnr", "PSNR"), ("change", "change (dB)")],
                    rows=[AnalysisTableRow(r["intervention"], {"psnr": r["psnr_mean"], "change": r["psnr_change"]})
                          for r in rows],
                    note="none: the run's own synthesis; every edit is seeded by (seed, task)").write(context.output)]

    @staticmethod
    def tsne_patterns(context: AnalysisContext, subject_id: str) -> list[np.ndarray]:
        """Availability masks (C, D) of the training range: every modality subset (brain); for each count, seeded
        run starts (cardiac)."""
        task = context.task
        lo, hi = task.train_missing
        channels, slices = task.channels, task.preprocess.shape[0]
        if task.problem == "missing-modality":
            return [availability_from_missing(task.problem, channels, slices, list(missing))
                    for k in range(lo, hi + 1) for missing in itertools.combinations(range(channels), k)]
        rng = seeded_rng("copedit-prompt-tsne", context.seed, task.name, subject_id)
        return [availability_from_missing(task.problem, channels, slices, k, run_start=int(start))
                for k in sorted({lo, (lo + hi) // 2, hi})
                for start in rng.choice(slices - k + 1, size=min(CARDIAC_TSNE_STARTS, slices - k + 1), replace=False)]

    def _tsne(self, context, method: CoPeDiT, subjects) -> list[Path]:
        from sklearn.manifold import TSNE

        task, tokenizer = context.task, method.tokenizer
        names = task.element_names
        vectors, rows = [], []
        for subject in subjects:
            latents = tokenizer.encode(torch.from_numpy(np.array(subject.image, dtype=np.float32))[None])
            for availability in self.tsne_patterns(context, subject.subject_id):
                mask = torch.from_numpy(availability)[None]
                available = mask_latents(latents, tokenizer.latent_availability(mask))
                vectors.append(tokenizer.prompts_from_latents(available).flatten())
                missing = ~availability.all(axis=1) if task.problem == "missing-modality" else ~availability[0]
                rows.append({"subject": subject.subject_id, "missing_count": int(missing.sum()),
                             "missing": "+".join(names[c] for c in np.flatnonzero(missing))
                             if task.problem == "missing-modality" else "",
                             "run_start": "" if task.problem == "missing-modality" else int(np.argmax(missing))})
        features = torch.stack(vectors).numpy().astype(np.float64)
        perplexity = float(min(30.0, max(2.0, (len(features) - 1) / 3)))
        # exact gradients: a few hundred points, and no thread-order dependence (Barnes-Hut sums in parallel)
        embedding = TSNE(n_components=2, perplexity=perplexity, init="pca", method="exact",
                         random_state=context.seed).fit_transform(features)
        for row, (x, y) in zip(rows, embedding):
            row.update(tsne_x=float(x), tsne_y=float(y))
        plt = _pyplot()
        figure, axes = plt.subplots(1, 2, figsize=(10, 4.2))
        counts = np.array([r["missing_count"] for r in rows])
        shown = axes[0].scatter(embedding[:, 0], embedding[:, 1], c=counts, cmap="viridis", s=10)
        figure.colorbar(shown, ax=axes[0], label="missing count")
        if task.problem == "missing-modality":
            labels = sorted({r["missing"] for r in rows}, key=lambda s: (s.count("+"), s))
            colours = plt.get_cmap("tab20")
            for index, label in enumerate(labels):
                chosen = np.array([r["missing"] == label for r in rows])
                axes[1].scatter(embedding[chosen, 0], embedding[chosen, 1], s=10, color=colours(index % 20),
                                label=label)
            axes[1].legend(fontsize=6, ncol=2, title="missing", title_fontsize=7)
        else:
            shown = axes[1].scatter(embedding[:, 0], embedding[:, 1], c=[r["run_start"] for r in rows],
                                    cmap="plasma", s=10)
            figure.colorbar(shown, ax=axes[1], label="run start (slice)")
        for axis, title in zip(axes, ("by missing count", "by missing modalities" if task.problem ==
                                                        "missing-modality" else "by run start")):
            axis.set(title=f"t-SNE of prompts {title}", xticks=[], yticks=[])
        return [_write_csv(context.output / "tsne.csv", rows), _save_figure(figure, context.output / "tsne.png")]

    def _attention(self, context, method: CoPeDiT) -> list[Path]:
        kind = PRIMARY_KIND[context.task.problem]
        subject, batch = context.focus_batch()
        missing = context.describe_missing(batch)
        with AttentionRecorder(method.network, kind) as recorder:
            torch.manual_seed(context.synthesis_seed(subject.subject_id))
            method.synthesize(batch)
        maps = recorder.maps()
        if not maps:
            return [_write_text(context.output / "attention.md",
                                f"no {kind} blocks: the diffuser of {context.method_cls.name} has no factorised "
                                f"{kind} attention\n")]
        size = next(iter(maps.values())).shape[0]
        labels = (context.task.element_names if kind == "modal" else [str(i) for i in range(size)])
        rows = [{"subject": subject.subject_id, "missing": missing, "block": index, "query": labels[q],
                 "key": labels[k], "weight": float(weights[q, k])}
                for index, weights in maps.items() for q in range(size) for k in range(size)]
        plt = _pyplot()
        figure, axes = plt.subplots(1, len(maps), figsize=(3.2 * len(maps), 3.2), squeeze=False)
        for axis, (index, weights) in zip(axes[0], maps.items()):
            shown = axis.imshow(weights.numpy(), vmin=0, vmax=1, cmap="viridis")
            axis.set(title=f"{kind} block {index}", xlabel="key", ylabel="query")
            if kind == "modal":
                axis.set(xticks=range(size), yticks=range(size), xticklabels=labels, yticklabels=labels)
        figure.colorbar(shown, ax=axes[0].tolist(), shrink=0.8)
        figure.suptitle(attention_title(context.task.problem, subject.subject_id, missing))
        return [_write_csv(context.output / "attention.csv", rows),
                _save_figure(figure, context.output / "attention.png")]


# -- the tokenizer ablation -----------------------------------------------------------------------------------
TOKENIZER_ABLATIONS: dict[str, dict[str, float]] = {
    "full": {},
    "no count task": {"weight_count": 0.0},
    "no position task": {"weight_position": 0.0},
    "no assessment task": {"weight_contrastive": 0.0},
    "no pretext task": {"weight_pretext": 0.0},
}
# The paper's CoPeVAE reconstruction PSNR / SSIM (full model; it reports that removing each pretext task lowers it).
REPORTED_RECONSTRUCTION = {"brats": ("BraTS", 35.05, 0.935), "ixi": ("IXI", 31.28, 0.921),
                           "cardiac": ("cardiac (UKBB)", 33.34, 0.931)}
DATASET_REFERENCE = {"phantom-brats": "brats", "brats": "brats", "phantom-ixi": "ixi", "ixi": "ixi",
                     "phantom-cardiac": "cardiac", "ukbb": "cardiac", "acdc": "cardiac"}


class TokenizerAnalysis(Analysis):
    """CoPeVAE with each pretext task removed and with all removed: reconstruction on validation subjects."""

    name: ClassVar[str] = "tokenizer"
    summary: ClassVar[str] = "CoPeVAE tokenizer ablation: each pretext task removed, reconstruction on validation"
    needs_model: ClassVar[bool] = False
    split: ClassVar[str] = "validation"

    @classmethod
    def unsupported_reason(cls, method_cls: type, config: Any) -> str | None:
        return _copedit_reason(method_cls)

    def run(self, context: AnalysisContext) -> list[Path]:
        task = context.task
        if len(context.data.validation) == 0:
            raise MribenchError(f"task {task.name}: no validation subjects to measure the tokenizers on")
        base = context.config.for_problem(task.problem).tokenizer
        images, held_out = TrainImages(context.data.train, task), TrainImages(context.data.validation, task)
        shared = tokenizer_folder(context.shared_dir, context.preset, context.seed)
        rows = []
        for variant, changes in TOKENIZER_ABLATIONS.items():
            folder = shared if not changes else shared.with_name(f"{shared.name}-{variant.replace(' ', '-')}")
            with torch.enable_grad():  # analyses run under no_grad; training these tokenizers needs gradients
                tokenizer, _ = train_tokenizer(replace(base, **changes), task, images, folder, context.seed,
                                               context.progress)
            facts = tokenizer_report(tokenizer, task, held_out, context.seed, split="validation")
            rows.append({"tokenizer": variant, "psnr": facts["reconstruction_psnr"],
                         "ssim": facts["reconstruction_ssim"], "count_acc": facts["count_acc"],
                         "position_acc": facts["position_acc"], "assessment_acc": facts["assessment_acc"],
                         "subjects": facts["report_subjects"], "split": "validation", "kind": "ours"})
        reference = REPORTED_RECONSTRUCTION.get(DATASET_REFERENCE.get(task.dataset, ""))
        if reference is not None:
            rows.append({"tokenizer": f"full, reported (paper, {reference[0]}: real data)", "psnr": reference[1],
                         "ssim": reference[2], "count_acc": "", "position_acc": "", "assessment_acc": "",
                         "subjects": "", "split": "", "kind": "reported"})
        columns = ["tokenizer", "psnr", "ssim", "count_acc", "position_acc", "assessment_acc", "subjects"]
        title = (f"CoPeVAE reconstruction on the validation subjects of {task.name} (preset {context.preset}, seed "
                 f"{context.seed}); PSNR dB / SSIM as the evaluators score them\n\n")
        context.say(f"analysis tokenizer: {len(TOKENIZER_ABLATIONS)} tokenizers on {task.name}")
        return [_write_csv(context.output / "reconstruction.csv", rows),
                _write_text(context.output / "reconstruction.md", title + _markdown(rows, columns)),
                reconstruction_table(rows).write(context.output)]


def _number(value: Any) -> float | None:
    """A table value: None for an empty or non-finite one."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


RECONSTRUCTION_COLUMNS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("count_acc", "count acc."),
                          ("position_acc", "position acc."), ("assessment_acc", "assessment acc."))


def reconstruction_table(rows: list[dict[str, Any]]) -> AnalysisTable:
    """The paper's reconstruction table from the tokenizer ablation's rows (ours, then the paper's full model)."""
    return AnalysisTable(
        key="tokenizer-reconstruction",
        title="Tokenizer ablation: CoPeVAE reconstruction with each pretext task removed (validation subjects)",
        columns=list(RECONSTRUCTION_COLUMNS),
        rows=[AnalysisTableRow(row["tokenizer"], {key: _number(row[key]) for key, _ in RECONSTRUCTION_COLUMNS},
                               "result" if row["kind"] == "ours" else "reported")
              for row in rows],
        note="PSNR / SSIM on the validation subjects as the evaluators score them; count / position / assessment "
             "acc.: the pretext heads' accuracy (a removed task's head is untrained); the paper reports only its "
             "full model's reconstruction and that removing each pretext task lowers it")
