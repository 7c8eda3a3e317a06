import subprocess
import sys

import pytest

from probexit.cli.main import build_parser, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "train", "bench", "tinyworld"):
        assert command in out


def test_unknown_command_exits_non_zero():
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["nonsense"])
    assert exit_info.value.code != 0


def test_console_script_runs_as_module():
    done = subprocess.run([sys.executable, "-m", "probexit.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "probexit" in done.stdout
