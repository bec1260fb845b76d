"""python -m minunet.experiments isbi, end to end on a tiny configuration and a made-up 30-slice volume (the real
experiment takes an hour); the PyTorch twin's recipe equals minunet's step for step (skipped without torch)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minunet import experiments, metrics
from minunet.data import synthetic_cells

TINY = ["--steps", "3", "--depth", "2", "--base-channels", "4", "--tile", "44", "--batch-size", "1",
        "--val-every", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """30 synthetic 48x48 slices in the ISBI layout: image/k.png, label/k.png (255 = cell, 0 = membrane)."""
    root = tmp_path_factory.mktemp("isbi")
    images, instances = synthetic_cells(30, size=48, seed=0)
    for sub in ("image", "label"):
        (root / sub).mkdir()
    for k, (image, cells) in enumerate(zip(images, instances)):
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(root / "image" / f"{k}.png")
        Image.fromarray(np.where(cells > 0, 255, 0).astype(np.uint8)).save(root / "label" / f"{k}.png")
    return root


def _run(volume, tmp_path, *extra):
    out = tmp_path / "results"
    code = experiments.main(["isbi", "--data-dir", str(volume), "--work-dir", str(tmp_path / "work"),
                             "--out-dir", str(out), *TINY, *extra])
    assert code == 0
    return out


def test_the_experiment_trains_scores_and_writes_its_report(volume, tmp_path, capsys):
    out = _run(volume, tmp_path)
    (md,), (js,), (png,) = (sorted(out.glob(f"isbi-numpy-*.{s}")) for s in ("md", "json", "png"))
    record = json.loads(js.read_text())
    (run,) = record["runs"]
    assert run["name"] == "minunet" and run["steps"] == 3 and record["config"]["depth"] == 2
    assert [r["step"] for r in run["log"] if "val_rand_error" in r] == [2, 3]
    # the scores are the challenge's, of slices 25-29 predicted by the saved model
    from minunet.checkpoint import load_model
    from minunet.predict import predict_probabilities
    model, _ = load_model(tmp_path / "work" / "minunet-seed1" / "checkpoint.npz", "numpy")
    slices = [np.asarray(Image.open(volume / "image" / f"{k}.png")) / np.float32(255) for k in range(25, 30)]
    truth = [np.asarray(Image.open(volume / "label" / f"{k}.png")) == 255 for k in range(25, 30)]
    cells = [predict_probabilities(model, s.astype(np.float32))[1] for s in slices]
    direct = metrics.isbi2012_challenge(cells, truth)
    for name in ("rand_error", "pixel_error", "warping_error"):
        assert run["scores"][name] == pytest.approx(direct[name].error, abs=1e-12)
    assert set(run["scores_tta"]) >= {"rand_error", "pixel_error", "warping_error"}
    text = md.read_text()
    assert "| minunet | 1 | 3 |" in text and "0.000353" in text and png.stat().st_size > 0
    assert "wrote" in capsys.readouterr().out
    # a second run the same day does not overwrite the first
    again = experiments.write_results(out, record)
    assert again[0].name == md.name.replace(".md", "-2.md") and len(list(out.glob("isbi-numpy-*.md"))) == 2


def test_ctrl_c_scores_and_writes_what_was_trained(volume, tmp_path, monkeypatch):
    from minunet.train import Trainer
    real_step = Trainer.train_step

    def interrupted_at_the_second(self):
        if self.step == 1:
            raise KeyboardInterrupt
        return real_step(self)
    monkeypatch.setattr(Trainer, "train_step", interrupted_at_the_second)
    out = _run(volume, tmp_path, "--no-tta")
    (run,) = json.loads(next(out.glob("*.json")).read_text())["runs"]
    assert run["steps"] == 1 and run["interrupted"] and "rand_error" in run["scores"]
    assert "| 1 (interrupted) |" in next(out.glob("*.md")).read_text()
    # Ctrl-C while the second seed's network is scored (its first validation): the first seed's run is written
    monkeypatch.setattr(Trainer, "train_step", real_step)
    real_scores, calls = experiments.challenge_scores, []

    def interrupted_on_seed_2(model, images, labels, **options):
        calls.append(1)
        if len(calls) > 3:  # seed 1: validations at steps 2 and 3, then its final scores
            raise KeyboardInterrupt
        return real_scores(model, images, labels, **options)
    monkeypatch.setattr(experiments, "challenge_scores", interrupted_on_seed_2)
    out = _run(volume, tmp_path / "seeds", "--no-tta", "--seeds", "1", "2")
    assert [run["seed"] for run in json.loads(next(out.glob("*.json")).read_text())["runs"]] == [1]


def test_bad_data_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "image").mkdir()
    (tmp_path / "label").mkdir()
    for k in range(3):
        Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "image" / f"{k}.png")
        Image.fromarray(np.full((48, 48), 255, np.uint8)).save(tmp_path / "label" / f"{k}.png")
    assert experiments.main(["isbi", "--data-dir", str(tmp_path), "--work-dir", str(tmp_path / "w"),
                             "--out-dir", str(tmp_path / "o")]) == 2
    assert "3 slices" in capsys.readouterr().err


def test_the_twin_follows_minunets_run_step_for_step(volume, tmp_path):
    pytest.importorskip("torch")
    out = _run(volume, tmp_path, "--twin", "--dropout", "0", "--no-tta")  # dropout masks are the one difference
    (record,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    mine, twin = record["runs"]
    assert twin["name"] == "PyTorch twin"
    losses = [[r["loss"] for r in run["log"] if "loss" in r] for run in (mine, twin)]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    assert twin["scores"]["rand_error"] == pytest.approx(mine["scores"]["rand_error"], abs=0.02)


def test_runs_made_apart_combine_into_one_report_with_the_noise_over_seeds(volume, tmp_path, capsys):
    """Two seeds run at the same time on one core each (as the CPU preset's results were made), then combined."""
    outs = [_run(volume, tmp_path / f"seed{seed}", "--no-tta", "--seeds", str(seed)) for seed in (2, 1)]
    files = [str(next(out.glob("*.json"))) for out in outs]
    combined = tmp_path / "combined"
    assert experiments.main(["combine", *files, "--out-dir", str(combined)]) == 0
    record = json.loads(next(combined.glob("*.json")).read_text())
    assert [run["seed"] for run in record["runs"]] == [1, 2] and len(record["command"]) == 2
    text = next(combined.glob("*.md")).read_text()
    rand = [run["scores"]["rand_error"] for run in record["runs"]]
    assert "| minunet | 1, 2 | " in text and f"{np.mean(rand):.4f} ({min(rand):.4f} - {max(rand):.4f})" in text
    assert text.count("`python -m minunet.experiments isbi") == 2
    # what cannot be one experiment is one clear error
    assert experiments.main(["combine", files[0], files[0], "--out-dir", str(combined)]) == 2
    assert "the same run twice" in capsys.readouterr().err
    other = json.loads(Path(files[1]).read_text())
    other["config"]["depth"] += 1
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert experiments.main(["combine", files[0], str(tmp_path / "other.json"), "--out-dir", str(combined)]) == 2
    assert "differ in their configuration" in capsys.readouterr().err
    (tmp_path / "bench.json").write_text("{}")
    assert experiments.main(["combine", files[0], str(tmp_path / "bench.json"), "--out-dir", str(combined)]) == 2
    assert "not a results file" in capsys.readouterr().err
