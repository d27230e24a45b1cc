import json
import subprocess
import sys
from pathlib import Path

from pqstudy.cli import main


def test_cli_train_eval_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--profile", "smoke", "--out", str(out), "--quiet",
               "--set", "train.steps=12", "--set", "train.eval_limit=64", "--set", "quantizer.kind=pq",
               "--set", "quantizer.subspaces=4"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["quantizer"]["kind"] == "pq" and config["run_id"] == metrics["run_id"]
    assert metrics["bits_per_position"] == 4 * 6
    history = json.loads((out / "history.json").read_text())
    assert history and "utilisation" in history[0]
    capsys.readouterr()
    assert main(["eval", str(out), "--quiet", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "psnr" in printed and "utilisation" in printed
    again = json.loads((out / "metrics.json").read_text())
    assert again["psnr"] == metrics["psnr"] and again["steps"] == 12


def test_cli_bad_set_names_the_field(tmp_path, capsys):
    rc = main(["train", "--profile", "smoke", "--out", str(tmp_path), "--set", "quantizer.codebok_size=64"])
    assert rc == 2
    assert "quantizer.codebok_size" in capsys.readouterr().err
    rc = main(["train", "--profile", "smoke", "--out", str(tmp_path), "--set", "quantizer.dim=7",
               "--set", "quantizer.kind=pq", "--set", "quantizer.subspaces=2"])
    assert rc == 2
    assert "quantizer.subspaces" in capsys.readouterr().err
    assert not (tmp_path / "config.json").exists()  # rejected before any work


def test_console_script_smoke_run(tmp_path):
    script = Path(sys.executable).parent / "pqstudy"
    out = tmp_path / "run"
    proc = subprocess.run(
        [str(script), "train", "--profile", "smoke", "--out", str(out), "--quiet", "--set", "train.steps=5",
         "--set", "train.eval_limit=32"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "metrics.json").exists()
    bad = subprocess.run([str(script), "train", "--out", str(out), "--set", "train.stepz=1"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "train.stepz" in bad.stderr
