"""Tests of the script that trains the shipped melody model (``python -m labkit.train_shipped``), without training."""
from labkit.checkpoint import load_melody_model, shipped_melody_model_info, shipped_melody_model_path
from labkit.errors import CorpusError
from labkit.train_shipped import FOLK_STYLES, SHIPPED_MODEL, SHIPPED_TRAIN, main


def test_shipped_settings_describe_the_shipped_model():
    assert "chorale" not in FOLK_STYLES and len(FOLK_STYLES) == 7
    assert SHIPPED_MODEL.num_params() * 4 < 3 * 2 ** 20          # float32 parameters under 3 MB
    assert shipped_melody_model_path().name == "melody_lstm.npz"
    info = shipped_melody_model_info()
    assert info["model_config"] == SHIPPED_MODEL.to_dict()
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
