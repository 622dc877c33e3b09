"""Parameter roles: the name-to-role table of ``infer_role``, role validation, and the roles of every
benchmark task's parameters (which the shipped agent's features depend on)."""

from __future__ import annotations

import re

import pytest

from autollm_sampler.exceptions import InvalidSpaceError
from autollm_sampler.space import (
    ROLES,
    CategoricalParam,
    FloatParam,
    SearchSpace,
    SimplexParam,
    check_role,
    infer_role,
)

# Realistic parameter names (Hugging Face TrainingArguments and model configs, nanoGPT, Megatron-LM,
# modded-nanogpt, TRL) and the role each should get.
NAME_ROLES = [
    # Hugging Face TrainingArguments
    ("learning_rate", "lr"),
    ("weight_decay", "weight_decay"),
    ("adam_beta1", "other"),
    ("adam_beta2", "other"),
    ("adam_epsilon", "other"),
    ("max_grad_norm", "other"),
    ("num_train_epochs", "other"),
    ("max_steps", "other"),
    ("lr_scheduler_type", "other"),
    ("warmup_ratio", "warmup"),
    ("warmup_steps", "warmup"),
    ("per_device_train_batch_size", "batch_size"),
    ("gradient_accumulation_steps", "other"),
    ("label_smoothing_factor", "other"),
    ("seed", "other"),
    # Hugging Face model configs
    ("hidden_size", "width"),
    ("intermediate_size", "width"),
    ("num_hidden_layers", "depth"),
    ("num_attention_heads", "heads"),
    ("num_key_value_heads", "heads"),
    ("hidden_dropout_prob", "dropout"),
    ("attention_probs_dropout_prob", "dropout"),
    ("embed_dropout", "dropout"),
    ("hidden_act", "other"),
    ("max_position_embeddings", "other"),
    ("vocab_size", "other"),
    ("rope_theta", "other"),
    ("layer_norm_eps", "other"),
    ("initializer_range", "other"),
    # nanoGPT
    ("n_layer", "depth"),
    ("n_head", "heads"),
    ("n_embd", "width"),
    ("dropout", "dropout"),
    ("bias", "bias"),
    ("batch_size", "batch_size"),
    ("block_size", "other"),
    ("beta1", "other"),
    ("grad_clip", "other"),
    ("decay_lr", "other"),
    ("warmup_iters", "warmup"),
    ("lr_decay_iters", "other"),
    ("min_lr", "lr"),
    ("max_iters", "other"),
    ("attn_pdrop", "dropout"),
    # Megatron-LM
    ("lr", "lr"),
    ("lr_decay_style", "other"),
    ("lr_warmup_fraction", "warmup"),
    ("lr_warmup_iters", "warmup"),
    ("lr_warmup_steps", "warmup"),
    ("global_batch_size", "batch_size"),
    ("micro_batch_size", "batch_size"),
    ("num_layers", "depth"),
    ("ffn_hidden_size", "width"),
    ("hidden_dropout", "dropout"),
    ("attention_dropout", "dropout"),
    ("add_bias_linear", "bias"),
    ("num_query_groups", "other"),
    ("init_method_std", "other"),
    # modded-nanogpt / Muon and schedules
    ("embed_lr", "lr"),
    ("matrix_lr", "lr"),
    ("muon_lr", "lr"),
    ("muon_to_adam_lr", "other"),
    ("min_lr_ratio", "other"),
    ("lr_schedule", "other"),
    ("cooldown_ratio", "other"),
    ("peak_lr", "lr"),
    ("learningRate", "lr"),
    # architecture sweeps
    ("d_model", "width"),
    ("embed_dim", "width"),
    ("head_dim", "width"),
    ("d_ff", "width"),
    ("mlp_ratio", "mlp_ratio"),
    ("mlp_ratio_3", "mlp_ratio"),
    ("ffn_ratio", "mlp_ratio"),
    ("depth", "depth"),
    ("n_kv_heads", "heads"),
    # misspellings and short forms
    ("weights_decay", "weight_decay"),
    ("wd", "weight_decay"),
    ("bs", "batch_size"),
    # RL fine-tuning (TRL)
    ("beta", "kl_coef"),
    ("init_kl_coef", "kl_coef"),
    ("temperature", "temperature"),
    ("num_generations", "group_size"),
    ("group_size", "group_size"),
    # data mixtures
    ("mixture", "mixture"),
    ("domain_weights", "mixture"),
    ("mix", "mixture"),
]


def test_table_is_large_and_uses_known_roles() -> None:
    assert len(NAME_ROLES) >= 40
    assert len({n for n, _ in NAME_ROLES}) == len(NAME_ROLES)
    assert {r for _, r in NAME_ROLES} <= set(ROLES)


@pytest.mark.parametrize(("name", "role"), NAME_ROLES)
def test_infer_role(name: str, role: str) -> None:
    assert infer_role(name) == role


@pytest.mark.parametrize(
    ("name", "role"),
    [("peak-lr", "lr"), ("model.n_embd", "width"), ("Hidden Dropout", "dropout"), ("numHeads", "heads"), ("colour", "other"), ("", "other")],
)
def test_infer_role_separators_and_case(name: str, role: str) -> None:
    assert infer_role(name) == role


def test_the_guess_is_used_unless_a_role_is_given() -> None:
    space = SearchSpace(params={
        "lr_warmup_steps": FloatParam(low=0, high=1000),
        "embed_dropout": FloatParam(low=0.0, high=0.3),
        "embed_dim": CategoricalParam(choices=(256, 512, 1024)),
        "x": FloatParam(low=0.0, high=1.0, role="dropout"),
    })
    assert {n: space.role_of(n) for n in space.params} == {
        "lr_warmup_steps": "warmup", "embed_dropout": "dropout", "embed_dim": "width", "x": "dropout"}
    assert space.roles() == ["warmup", "dropout", "width", "dropout"]


def test_unknown_role_is_an_error_listing_the_roles() -> None:
    with pytest.raises(ValueError) as info:
        FloatParam(low=1e-4, high=1e-1, log=True, role="learning_rate")
    msg = str(info.value)
    assert "unknown role 'learning_rate'" in msg
    assert all(r in msg for r in ROLES)
    assert "did you mean 'lr'" in msg


def test_unknown_role_in_a_space_file_names_the_parameter() -> None:
    with pytest.raises(InvalidSpaceError) as info:
        SearchSpace.from_dict({"params": {"peak": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True, "role": "lrate"}}})
    msg = str(info.value)
    assert "params.peak" in msg and "unknown role 'lrate'" in msg and "batch_size" in msg
    assert "did you mean" not in msg  # "lrate" says nothing the guess can read


def test_unknown_role_message_is_bounded() -> None:
    with pytest.raises(ValueError) as info:
        check_role("x" * 10_000)
    assert len(str(info.value)) < 400


def test_role_case_and_spaces_are_ignored() -> None:
    assert check_role(" LR ") == "lr"
    assert FloatParam(low=0.0, high=1.0, role="Dropout").role == "dropout"
    assert SimplexParam(components=("a", "b")).role == "mixture"
    with pytest.raises(ValueError, match="must be a string"):
        check_role(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- benchmark tasks keep their roles
# The shipped agent was trained and benchmarked with these roles; a change of infer_role must not move them.
GYM_ROLES = {
    "lr": "lr",
    "batch_size": "batch_size",
    "mixture": "mixture",
    "embed_dim": "width",
    "n_layers": "depth",
    "mlp_ratio_<i>": "mlp_ratio",
    "heads_<i>": "heads",
    "bias": "bias",
    "kl_coef": "kl_coef",
    "group_size": "group_size",
    "temperature": "temperature",
    "warmup_frac": "warmup",
    "clip_eps": "other",
}
USEROBJ_ROLES = {
    "adamw": {"lr": "lr", "warmup_steps": "warmup", "batch_size": "batch_size", "weight_decay": "weight_decay"},
    "saturating": {"x1": "other", "x2": "other", "x3": "other", "dropout": "dropout"},
    "nonmonotone": {"lr": "lr", "depth": "depth", "ratio": "mixture"},
    "mixture": {"mix": "mixture", "lr": "lr"},
}


def test_gym_task_parameters_keep_their_roles(raw_dir) -> None:
    from autollm_sampler import gym

    seen: set[str] = set()
    for task_id in gym.list_ids():
        task = gym.make(task_id)
        for cell in task.cells:
            for name in cell.space.params:
                pattern = re.sub(r"_\d+$", "_<i>", name)
                assert pattern in GYM_ROLES, f"{task_id}: new parameter {name!r}; add its expected role here"
                assert cell.space.role_of(name) == GYM_ROLES[pattern], (task_id, name)
                # the name alone reads the same, so a space written without roles= gets the same features
                assert infer_role(name) == GYM_ROLES[pattern], (task_id, name)
                seen.add(pattern)
    assert seen == set(GYM_ROLES)


@pytest.mark.parametrize("family", sorted(USEROBJ_ROLES))
def test_user_objective_tasks_keep_their_roles(family: str) -> None:
    from autollm_sampler.benchmark.userobj import make_task

    space = make_task(family, 0).space
    assert {n: space.role_of(n) for n in space.params} == USEROBJ_ROLES[family]
