"""Tests of the script that trains the shipped melody model (``python -m labkit.train_shipped``), without training."""
import pytest

from labkit.checkpoint import load_melody_model, shipped_melody_model_info, shipped_melody_model_path
from labkit.errors import CorpusError
from labkit.models import ModelConfig
from labkit.train_shipped import FOLK_STYLES, SHIPPED_MODEL, SHIPPED_TRAIN, main


def test_shipped_settings_describe_the_shipped_model():
    assert "chorale" not in FOLK_STYLES and len(FOLK_STYLES) == 7
    assert SHIPPED_MODEL.num_params() * 4 < 3 * 2 ** 20          # float32 parameters under 3 MB
    assert shipped_melody_model_path().name == "melody_lstm.npz"
    info = shipped_melody_model_info()
    # a field added later (condition_tokens) is absent from an older record and reads as its default
    assert ModelConfig.from_dict(info["model_config"]) == SHIPPED_MODEL
    assert {**info["train_config"], "progress": True} == SHIPPED_TRAIN.to_dict()   # trained without a bar
    assert load_melody_model()[1] == SHIPPED_MODEL


def test_errors_go_to_stderr(monkeypatch, capsys, tmp_path):
    import labkit.train_shipped as script

    def fail(*args, **kwargs):
        raise CorpusError("no corpus here")

    monkeypatch.setattr(script, "train_shipped_model", fail)
    assert main(["--out", str(tmp_path / "m"), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no corpus here" in captured.err


def test_ctrl_c_is_one_line_and_exit_status_130(monkeypatch, capsys, tmp_path):
    import labkit.train_shipped as script

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(script, "train_shipped_model", interrupted)
    assert main(["--out", str(tmp_path / "m"), "--workdir", str(tmp_path / "w"), "--no-progress"]) == 130
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [f"labkit: interrupted; run the same command to resume from "
                                                 f"{tmp_path / 'w'}"]
    assert main(["--out", str(tmp_path / "m"), "--no-progress"]) == 130
    assert "use --workdir" in capsys.readouterr().err


def test_ctrl_c_in_training_leaves_a_checkpoint_that_resumes(monkeypatch, capsys, tmp_path):
    """The real path: fit writes its checkpoint on Ctrl-C, train_shipped says so in one line, nothing half-written."""
    import dataclasses

    import labkit.train_shipped as script
    from labkit.checkpoint import read_meta
    from labkit.train import fit

    def tiny(out, *, train_config, workdir, **kwargs):
        import numpy as np
        from labkit.models import ModelConfig

        batch = {"tokens": np.tile(np.arange(9, dtype=np.int32) % 3, (4, 1)), "mask": np.ones((4, 9), np.float32)}

        def batches(epoch):
            yield batch
            raise KeyboardInterrupt

        fit(ModelConfig(vocab_size=3, embed_dim=4, hidden_size=8, num_layers=1),
            dataclasses.replace(train_config, num_steps=5, eval_every=5), batches, None, workdir=workdir)

    monkeypatch.setattr(script, "train_shipped_model", tiny)
    assert main(["--workdir", str(tmp_path), "--no-progress"]) == 130
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert read_meta(tmp_path / "checkpoint.npz")["progress"]["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]     # no temporary file left


@pytest.mark.parametrize("steps", ["0", "-3", "99999999999999999999", "ten", "nan"])
def test_steps_out_of_range_is_a_usage_error(capsys, steps):
    with pytest.raises(SystemExit) as info:
        main(["--steps", steps])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--steps" in captured.err and "Traceback" not in captured.err
