"""Fine-tuning settings declared once: checks, run config keys, CLI flags and docs follow."""

from dataclasses import fields

import pytest

from lensllm_nb.cli import build_parser
from lensllm_nb.collection.finetune import FineTuner
from lensllm_nb.collection.settings import FineTuneSettings, cli_settings
from lensllm_nb.errors import ConfigError

SETTINGS = [f.name for f in fields(FineTuneSettings)]


def test_every_setting_is_a_keyword_of_the_tuner_and_documented():
    tuner = FineTuner("zoo/gpt2-tiny", lr=1e-3, threads=1)
    assert (tuner.lr, tuner.threads, tuner.epochs) == (1e-3, 1, 3)
    for name in SETTINGS:
        assert f"    {name} : " in FineTuner.__doc__
    with pytest.raises(TypeError):
        FineTuner("zoo/gpt2-tiny", 3)  # settings are keyword-only


@pytest.mark.parametrize("settings, message", [
    ({"lr": 0}, "`lr` must be a positive"),
    ({"warmup_ratio": 1.0}, "`warmup_ratio` must lie in [0, 1)"),
    ({"scheduler": "step"}, "`scheduler` must be one of"),
    ({"max_steps": 0}, "`max_steps` must be an integer ≥ 1"),
    ({"epochs": 0}, "`epochs` must be an integer ≥ 1"),
    ({"lora": "yes"}, "`lora` must be True or False"),
    ({"lora": True, "lora_target_modules": "q_proj"}, "`lora_target_modules` must be"),
    ({"precision": "fp16"}, "`precision` must be one of"),
    ({"threads": 0}, "`threads` must be an integer ≥ 1"),
])
def test_bad_settings_fail_with_the_argument_named(settings, message):
    with pytest.raises(ConfigError) as info:
        FineTuner("zoo/gpt2-tiny", **settings).check_settings()
    assert message in str(info.value)


def test_conditional_checks_apply_only_when_used():
    FineTuner("zoo/gpt2-tiny", epochs=0, max_steps=5).check_settings()  # epochs unused
    FineTuner("zoo/gpt2-tiny", lora_target_modules="q_proj").check_settings()  # lora off


def test_run_config_keys_are_the_recorded_ones():
    recorded = FineTuner("zoo/gpt2-tiny", lora=True).result_settings(text_pairs_causal=True, precision="fp32")
    assert list(recorded) == [
        "epochs", "max_steps", "lr", "batch_size", "grad_accum", "weight_decay", "warmup_ratio",
        "scheduler", "max_grad_norm", "lora", "early_stopping_patience", "eval_steps",
        "max_input_length", "max_target_length", "separator", "precision", "ntk",
    ]
    assert recorded["lora"] == {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}


def test_cli_flags_come_from_the_declarations():
    parser = build_parser()
    actions = parser._subparsers._group_actions[0].choices["finetune"]._actions
    flags = {option for action in actions for option in action.option_strings}
    for name in cli_settings():
        assert "--" + name.replace("_", "-") in flags
    assert set(cli_settings()) <= set(SETTINGS)
    assert "--progress" not in flags and "--no-progress" in flags


def test_every_command_help_renders_its_text_as_written():
    # argparse %-formats argument help but not descriptions: a "%%" there reaches the user as is.
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, command in commands.items():
        text = command.format_help()
        assert "%%" not in text and "%(" not in text, name
