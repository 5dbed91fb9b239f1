"""Learned prefix on the unified LoRA (study 4.6, variants 2 and 3).

The study's prefix has 10 tokens and 8,960 parameters per persona on a model of hidden size
896: that is a soft prompt on the input embeddings (PEFT's prompt tuning, ``kind="prompt"``),
trained over the unified model with its LoRA merged in. ``kind="prefix"`` is true prefix tuning
instead (PEFT's prefix tuning, Li & Liang 2021): learned keys and values that every layer attends
to before the prompt, ``layers x 2 x kv_dim`` parameters per virtual token. ``scope`` trains one
per persona or one per cluster. Both are saved as PEFT folders (``PeftModel.from_pretrained``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from peft import PeftModel, PrefixTuningConfig, PromptTuningConfig, get_peft_model

from shpers_core.evaluation.generation import CACHE_ARG, cache_layers
from shpers_core.evaluation.plan import EvalPlan
from shpers_core.methods.base import MethodSpec
from shpers_core.methods.cluster_lora import ClusterParams, cluster
from shpers_core.methods.prompting import persona_system_prompts
from shpers_core.models.chat import _render, _tokenize
from shpers_core.params import param
from shpers_core.training.adapters import (
    load_prefix_tuning,
    load_soft_prompt,
    prefix_key_values,
    save_prefix_tuning,
    save_soft_prompt,
)
from shpers_core.training.fit import fit


@dataclass
class SoftPromptParams(ClusterParams):
    """The cluster fields (k, features, cluster_seed) apply when scope is cluster."""

    title = "Soft prompt"
    scope: str = param("persona", "Learn one prompt per persona, or one per cluster of personas.",
                       choices=("persona", "cluster"))
    kind: str = param("prompt", "What is learned: a soft prompt on the input embeddings (prompt tuning), or "
                      "keys and values prepended in every layer (prefix tuning).", choices=("prompt", "prefix"))
    num_virtual_tokens: int = param(10, "Length of the learned prompt, in tokens (a KV prefix started from the "
                                    "description is as long as the description).", min=1, max=512)
    prefix_init: str = param("description", "How a KV prefix starts: the model's own keys and values of the "
                             "persona description as a system message (where the static text prefix starts), or "
                             "PEFT's random initialisation.", choices=("description", "random"))

    def clusters(self) -> bool:
        return self.scope == "cluster"


def merged_unified(ctx, unified) -> torch.nn.Module:
    """A copy of the base model with the unified adapter merged into its weights."""
    model = copy.deepcopy(ctx.base.model)
    peft_model = PeftModel.from_pretrained(model, unified.path)
    return peft_model.merge_and_unload().eval()


def description_key_values(model: torch.nn.Module, tokenizer, text: str) -> torch.Tensor:
    """The keys and values ``model`` computes for ``text`` as a system message, [layers, 2, kv heads, tokens,
    head dim]: a KV prefix that answers exactly as if the text stood before the prompt."""
    ids = _tokenize(tokenizer, _render(tokenizer, [{"role": "system", "content": text}], False))[0]
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], device=device), use_cache=True)
    layers = cache_layers(getattr(out, CACHE_ARG))
    return torch.stack([torch.stack([k[0], v[0]]) for k, v in layers]).float().cpu()


def flat_prefix(kv: torch.Tensor) -> torch.Tensor:
    """[layers, 2, heads, n, head dim] as PEFT's flat prefix [n, layers * 2 * heads * head dim]
    (the inverse of :func:`~shpers_core.training.adapters.prefix_key_values`)."""
    layers, _, heads, n, head_dim = kv.shape
    return kv.reshape(layers * 2, heads, n, head_dim).permute(2, 0, 1, 3).reshape(n, -1).contiguous()


def _peft_config(kind: str, num_virtual_tokens: int):
    if kind == "prefix":
        return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens, prefix_projection=False)
    return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens)


def _save(folder, peft_model, kind: str, base_model: str) -> torch.Tensor:
    """Write the trained prompt or prefix as a PEFT folder; returns what the evaluator takes."""
    config = peft_model.peft_config["default"]  # token_dim and heads as PEFT resolved them (KV heads for prefixes)
    embeddings = peft_model.get_prompt_embedding_to_save("default").detach().cpu()
    save = save_prefix_tuning if kind == "prefix" else save_soft_prompt
    save(folder, embeddings, base_model=base_model, num_layers=config.num_layers, token_dim=config.token_dim,
         num_attention_heads=config.num_attention_heads)
    if kind == "prefix":
        return prefix_key_values(embeddings, num_layers=config.num_layers, num_heads=config.num_attention_heads)
    return embeddings


def run(ctx, params: SoftPromptParams) -> EvalPlan:
    source = ctx.source_run("unified_lora")
    ctx.store.update_run(ctx.run_id, parent_run_id=source)
    unified = ctx.adapters_of(source)[None]
    if params.scope == "cluster":
        labels = cluster(ctx, params)
        groups = {f"cluster_{c}": [p for p, lab in zip(ctx.personas, labels) if lab == c] for c in sorted(set(labels))}
    else:
        groups = {pid: [pid] for pid in ctx.personas}
    model = merged_unified(ctx, unified)
    descriptions = persona_system_prompts(ctx)
    load = load_prefix_tuning if params.kind == "prefix" else load_soft_prompt
    artefact = "kv_prefix" if params.kind == "prefix" else "soft_prompt"
    prompts = {}
    for i, (name, members) in enumerate(groups.items()):
        folder = ctx.adapter_dir(name)
        if (folder / "adapter_config.json").exists():
            prompts[name] = load(folder)
            continue
        torch.manual_seed(ctx.train.seed)
        start = None
        if params.kind == "prefix" and params.prefix_init == "description":
            # A cluster starts from its first member's description.
            start = description_key_values(model, ctx.base.tokenizer, descriptions[members[0]])
        n_virtual = start.shape[3] if start is not None else params.num_virtual_tokens
        peft_model = get_peft_model(model, _peft_config(params.kind, n_virtual))
        if start is not None:
            with torch.no_grad():
                embedding = peft_model.prompt_encoder["default"].embedding.weight
                embedding.copy_(flat_prefix(start).to(embedding.device, embedding.dtype))
        result = fit(peft_model, ctx.pad_id, ctx.pooled_examples(members, "train"),
                     ctx.pooled_examples(members, "val"), ctx.train, ctx.reporter,
                     checkpoint_dir=ctx.checkpoint_dir(name), series=f"{name}/train")
        ctx.note_training(result)
        prompts[name] = _save(folder, peft_model, params.kind, ctx.base.name)
        ctx.store.add_artefact(ctx.run_id, artefact, str(folder), persona_id=name if name in ctx.personas else None)
        ctx.reporter.progress("prompts", i + 1, len(groups))
    del model
    learned = {pid: prompts[name] for name, members in groups.items() for pid in members}
    paths = {pid: str(ctx.adapter_dir(name)) for name, members in groups.items() for pid in members}
    plan = EvalPlan(adapters={pid: unified for pid in ctx.personas})
    if params.kind == "prefix":
        plan.kv_prefixes, plan.kv_prefix_paths = learned, paths
    else:
        plan.soft_prompts, plan.soft_prompt_paths = learned, paths
    return plan


METHOD = MethodSpec(
    name="soft_prompt",
    title="Unified + learned prefix",
    summary="A learned 10-token soft prompt, or key/value prefix in every layer, per persona (or per cluster) "
            "on the merged unified model.",
    params=SoftPromptParams,
    run=run,
    shows_lora_form=False,
    # Appendix A, "Prefix Tuning".
    train_defaults={"learning_rate": 1e-3, "num_epochs": 10, "batch_size": 2},
    requires=("unified_lora",),
)
