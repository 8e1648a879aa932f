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
from vllm.platforms import current_platform
from vllm.utils.argparse_utils import FlexibleArgumentParser

POSITIVE_FIELDS = ["window_size", "step_interval", "log_balancedness_interval"]


@pytest.fixture(autouse=True)
def known_device_type(monkeypatch):
    """The engine-args parser builds every config's defaults, and DeviceConfig
    refuses a machine with no accelerator. EPLB parsing does not depend on the
    device, so on such a machine (CPU CI) name one."""
    if not current_platform.device_type:
        monkeypatch.setattr(current_platform, "device_type", "cpu")


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
    from_json = parse_engine_cli(["--eplb-config", '{"step_interval": 100}'])
    assert EngineArgs.from_cli_args(from_json).eplb_config.step_interval == 100
    dotted = parse_engine_cli(["--eplb-config.window_size", "10"])
    assert EngineArgs.from_cli_args(dotted).eplb_config.window_size == 10
