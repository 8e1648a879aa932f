# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright contributors to the vLLM project
"""EPLB's window size and intervals must be positive, wherever they come from:
the config classes, the JSON `--eplb-config` form and the dotted
`--eplb-config.<field>` form. A bad value stops at parse time with the
field's name, before any engine is built."""

import pytest
from pydantic import ValidationError

from vllm.config.parallel import EPLBConfig, ParallelConfig
from vllm.engine.arg_utils import EngineArgs
from vllm.utils.argparse_utils import FlexibleArgumentParser

POSITIVE_FIELDS = ["window_size", "step_interval", "log_balancedness_interval"]


def parse_engine_cli(argv: list[str]):
    parser = EngineArgs.add_cli_args(FlexibleArgumentParser())
    return parser.parse_args(argv)


@pytest.mark.parametrize("field", POSITIVE_FIELDS)
@pytest.mark.parametrize("value", [0, -1, -1000])
def test_eplb_config_rejects_non_positive(field: str, value: int):
    with pytest.raises(ValidationError) as info:
        EPLBConfig(**{field: value})
    (error,) = info.value.errors()
    assert error["loc"] == (field,)
    assert error["type"] == "greater_than"


@pytest.mark.parametrize("field", POSITIVE_FIELDS)
def test_parallel_config_rejects_non_positive_eplb_field(field: str):
    with pytest.raises(ValidationError, match=field):
        ParallelConfig(eplb_config={field: 0})


@pytest.mark.parametrize("field", POSITIVE_FIELDS)
def test_eplb_config_accepts_positive(field: str):
    assert getattr(EPLBConfig(**{field: 1}), field) == 1
    assert getattr(EPLBConfig(**{field: 7}), field) == 7


def test_eplb_config_defaults_unchanged():
    config = EPLBConfig()
    assert (config.window_size, config.step_interval) == (1000, 3000)
    assert config.log_balancedness_interval == 1
    assert config.num_redundant_experts == 0


@pytest.mark.parametrize("field", POSITIVE_FIELDS)
@pytest.mark.parametrize("form", ["json", "dotted"])
def test_cli_rejects_non_positive_at_parse_time(field: str, form: str, capsys):
    if form == "json":
        argv = ["--eplb-config", f'{{"{field}": 0}}']
    else:
        argv = [f"--eplb-config.{field}", "0"]
    with pytest.raises(SystemExit) as info:
        parse_engine_cli(argv)
    assert info.value.code == 2  # argparse's usage error, not a crash
    message = capsys.readouterr().err
    assert "--eplb-config" in message
    assert field in message
    assert "greater than 0" in message


def test_cli_accepts_positive_values():
    args = parse_engine_cli(
        ["--eplb-config.window_size", "10", "--eplb-config", '{"step_interval": 100}']
    )
    engine_args = EngineArgs.from_cli_args(args)
    assert engine_args.eplb_config.step_interval == 100
    dotted = EngineArgs.from_cli_args(parse_engine_cli(["--eplb-config.window_size", "10"]))
    assert dotted.eplb_config.window_size == 10
