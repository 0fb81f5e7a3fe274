import json
import os
import subprocess
import time

import pytest
import torch
from PIL import Image

from tests.conftest import PYTHON, ROOT, make_digits, run, write_idx
from training.checkpoint import load_checkpoint, load_networks
from training.cli import main as train_main
from training.config import PRESETS
from training.evaluation import alarms


def test_smoke_run_writes_checkpoint_metrics_samples_and_label_map(trained_run):
    lines = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    for key in ("loss_d", "loss_g", "info_cat_nats", "accuracy", "nmi", "elapsed_s", "alarms"):
        assert key in lines[-1]
    assert lines[-1]["info_cat_bound_nats"] == pytest.approx(2.302585, abs=1e-5)
    assert 0 <= lines[-1]["accuracy"] <= 1
    grid = Image.open(trained_run / "samples" / "epoch_002_c2.png")
    assert grid.size == (10 * 30 + 2, 10 * 30 + 2)  # rows: c1's 10 values; columns: 10 steps of c2
    state = load_checkpoint(trained_run / "checkpoint.pt")
    assert state["step"] == 2 * (384 // 64)
    labels = json.loads((trained_run / "label_map.json").read_text())
    assert sorted(labels) == [str(d) for d in range(10)] == sorted(state["layout"].code("c1").labels)


def test_help_explains_every_option():
    result = run("training", "--help")
    assert result.returncode == 0
    for flag in ("--preset", "--data-dir", "--out", "--epochs", "--seed", "--device", "--resume", "--branch",
                 "--download", "--mirror", "--categorical", "--continuous", "--learn-sigma", "--translate",
                 "--cr-weight", "--cr-start-epoch", "--jitter-shear", "--jitter-stroke", "--ema-decay",
                 "--real-info-weight", "--identity-weight", "--identity-range", "--identity-start-epoch",
                 "--consistency-weight", "--view-mirror", "--precision"):
        assert flag in result.stdout


@pytest.mark.parametrize("flag, value, message", [
    ("--batch-size", "0", "must be >= 1, got 0"),
    ("--checkpoint-every", "0", "must be >= 1, got 0"),
    ("--translate", "-1", "must be >= 0, got -1"),
    ("--continuous", "-1", "must be >= 0, got -1"),
    ("--lr-d", "nan", "must be a finite number > 0, got nan"),
    ("--lambda-cont", "inf", "must be a finite number >= 0, got inf"),
    ("--epochs", "ten", "invalid integer value: 'ten'"),
    ("--jitter-shear", "-0.1", "must be a finite number >= 0, got -0.1"),
    ("--ema-decay", "-1", "must be a finite number >= 0, got -1"),
    ("--real-info-weight", "-0.5", "must be a finite number >= 0, got -0.5"),
    ("--identity-range", "0.5", "must be a finite number >= 1, got 0.5"),
    ("--consistency-weight", "-1", "must be a finite number >= 0, got -1"),
])
def test_bad_flag_values_are_refused_naming_the_flag(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), flag, value])
    assert exit_info.value.code == 2
    assert f"argument {flag}: {message}" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "run").exists()


def test_a_shift_of_half_the_image_is_refused_before_any_work(tmp_path, capsys):
    assert train_main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), "--translate", "14"]) == 2
    assert "error: --translate 14: must be under half the 28-pixel image (at most 13" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_latent_layout_from_flags(tmp_path, digits_dir):
    result = run("training", "--preset", "tiny", "--data-dir", str(digits_dir), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--categorical", "10,4", "--continuous", "3", "--noise", "uniform", "--learn-sigma")
    assert result.returncode == 0, result.stderr
    layout = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["layout"]
    assert [c.size for c in layout.categorical] == [10, 4] and len(layout.continuous) == 3
    assert layout.noise == "uniform"


def final_state(run_dir):
    state = load_checkpoint(run_dir / "checkpoint.pt")
    networks = ("generator", "discriminator", "generator_average", "discriminator_average")
    weights = {f"{net}.{k}": v for net in networks for k, v in state.get(net, {}).items()}
    return state, weights


# One intra-op thread: multi-threaded CPU kernels may sum in a different order in another process on some CPUs.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path, digits_dir, precision):
    # --translate: the shifts draw from the same RNG stream as the latents, so resume must restore it for both.
    # --ema-decay: the weight average is state of its own, which resume must restore too.
    common = ["--preset", "tiny", "--data-dir", str(digits_dir), "--epochs", "8", "--checkpoint-every", "2",
              "--seed", "3", "--device", "cpu", "--translate", "2", "--ema-decay", "0.9", "--precision", precision]
    straight = run("training", *common, "--out", str(tmp_path / "straight"), env=ONE_THREAD)
    assert straight.returncode == 0, straight.stderr

    killed_dir = tmp_path / "killed"
    process = subprocess.Popen([PYTHON, "-m", "training", *common, "--out", str(killed_dir)], cwd=ROOT, env=ONE_THREAD,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed_dir / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()
    process.wait()
    killed_state, _ = final_state(killed_dir)
    assert 0 < killed_state["step"] < 8 * 6, "the run must die mid-way for this test to mean anything"

    resumed = run("training", "--out", str(killed_dir), "--data-dir", str(digits_dir), "--resume", "--device", "cpu",
                  env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr
    state_a, weights_a = final_state(tmp_path / "straight")
    state_b, weights_b = final_state(killed_dir)
    assert state_a["step"] == state_b["step"] == 8 * 6
    assert state_a["config"].translate == state_b["config"].translate == 2
    # What resume restores is exact: the latent RNG stream and the optimizers' step counts.
    assert torch.equal(state_a["rng"], state_b["rng"])
    for opt in ("opt_g", "opt_d"):
        assert [s["step"].item() for s in state_a[opt]["state"].values()] == [
            s["step"].item() for s in state_b[opt]["state"].values()]
    # The weights match to float noise. A lost RNG or optimizer state moves them by about a learning rate
    # (1e-3) per step instead (checked by hand when this test was written), far outside this tolerance.
    assert weights_a.keys() == weights_b.keys() and any(name.startswith("generator_average.") for name in weights_a)
    for name in weights_a:
        torch.testing.assert_close(weights_b[name], weights_a[name], rtol=1e-4, atol=1e-5,
                                   msg=lambda detail, name=name: f"{name}: {detail}")
    epochs = [json.loads(line)["epoch"] for line in (killed_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 9))


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, digits_dir):
    result = run("training", "--out", str(tmp_path / "nothing"), "--data-dir", str(digits_dir), "--resume")
    assert result.returncode == 2 and "checkpoint.pt: checkpoint not found" in result.stderr


def test_a_branch_taking_up_the_identity_term_is_the_run_that_had_it_from_the_start(tmp_path, digits_dir):
    common = ["--preset", "tiny", "--data-dir", str(digits_dir), "--seed", "3", "--device", "cpu"]
    term = ["--epochs", "3", "--identity-weight", "0.3", "--identity-start-epoch", "2"]
    straight = run("training", *common, *term, "--out", str(tmp_path / "straight"), env=ONE_THREAD)
    assert straight.returncode == 0, straight.stderr
    base = run("training", *common, "--epochs", "2", "--out", str(tmp_path / "base"), env=ONE_THREAD)
    assert base.returncode == 0, base.stderr
    base_before = (tmp_path / "base" / "checkpoint.pt").read_bytes()

    branched = run("training", "--branch", str(tmp_path / "base"), "--out", str(tmp_path / "branched"),
                   "--data-dir", str(digits_dir), "--device", "cpu", *term, env=ONE_THREAD)
    assert branched.returncode == 0, branched.stderr
    assert f"from {tmp_path / 'base' / 'checkpoint.pt'}" in branched.stderr
    assert (tmp_path / "base" / "checkpoint.pt").read_bytes() == base_before  # the run it branched from is left as it is

    state_a, weights_a = final_state(tmp_path / "straight")
    state_b, weights_b = final_state(tmp_path / "branched")
    assert state_b["config"] == state_a["config"] and state_b["step"] == state_a["step"] == 3 * 6
    assert torch.equal(state_a["rng"], state_b["rng"])
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        torch.testing.assert_close(weights_b[name], weights_a[name], rtol=1e-4, atol=1e-5,
                                   msg=lambda detail, name=name: f"{name}: {detail}")
    lines = [json.loads(line) for line in (tmp_path / "branched" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3] and lines[-1]["identity_ce"] > 0  # the term acted
    assert len(state_b["commands"]) == 2 and "--branch" in state_b["commands"][-1]  # the model card shows both


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "3", "--seed", "4"], "--seed 4: the checkpoint's 2 epochs were trained with 0; only --epochs, "
                                       "--checkpoint-every and the identity term's options may change"),
    (["--epochs", "4", "--identity-weight", "0.3", "--identity-start-epoch", "1"],
     "--identity-start-epoch 1: the checkpoint has begun 2 epochs without the term; it can start at "
     "--identity-start-epoch 2 or later"),
    ([], "--epochs 2: TRAINED has trained 2 epochs; a branch needs more to train"),
])
def test_a_branch_that_would_change_trained_epochs_is_refused(tmp_path, capsys, digits_dir, trained_run, flags,
                                                              message):
    code = train_main(["--branch", str(trained_run), "--out", str(tmp_path / "run"), "--data-dir", str(digits_dir),
                       *flags])
    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "error: " + message.replace("TRAINED", str(trained_run))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_late_options_change_only_before_they_act():
    recipe = PRESETS["mnist"]
    later = recipe.continued({"epochs": 15, "identity_weight": 0.3, "identity_start_epoch": 12}, epochs_started=12)
    assert (later.epochs, later.identity_weight, later.identity_start_epoch) == (15, 0.3, 12)
    with pytest.raises(ValueError, match="begun 13 epochs without the term; it can start at --identity-start-epoch 13"):
        recipe.continued({"epochs": 15, "identity_weight": 0.3, "identity_start_epoch": 12}, epochs_started=13)
    with pytest.raises(ValueError, match="trained with the identity term since epoch 13; its options can no longer"):
        later.continued({"identity_weight": 0.1}, epochs_started=14)
    assert later.continued({"epochs": 20}, epochs_started=14).epochs == 20  # an acted term may train on unchanged


def test_a_branch_into_a_run_is_refused(tmp_path, capsys, digits_dir, trained_run):
    code = train_main(["--branch", str(tmp_path / "nothing"), "--out", str(trained_run), "--data-dir",
                       str(digits_dir), "--epochs", "3"])
    assert code == 2
    assert f"{trained_run / 'checkpoint.pt'}: --out already holds a run" in capsys.readouterr().err


def test_resume_refuses_options_its_epochs_were_not_trained_with(capsys, digits_dir, trained_run):
    code = train_main(["--resume", "--out", str(trained_run), "--data-dir", str(digits_dir), "--translate", "2"])
    assert code == 2
    assert "error: --translate 2: the checkpoint's 2 epochs were trained with 0" in capsys.readouterr().err


def test_a_continued_run_keeps_its_preset(capsys, digits_dir, trained_run):
    code = train_main(["--resume", "--out", str(trained_run), "--data-dir", str(digits_dir), "--preset", "mnist"])
    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: --preset mnist: {trained_run / 'checkpoint.pt'} was trained with preset tiny, which a resumed or "
        "branched run keeps; leave --preset out")


def test_a_run_continues_only_on_the_images_it_began_on(tmp_path, capsys, trained_run):
    other = tmp_path / "other-digits"
    other.mkdir()
    images, labels = make_digits(384, seed=1)
    write_idx(other / "train-images-idx3-ubyte.gz", images)
    write_idx(other / "train-labels-idx1-ubyte.gz", labels)
    code = train_main(["--branch", str(trained_run), "--out", str(tmp_path / "run"), "--data-dir", str(other),
                       "--epochs", "3"])
    assert code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith(f"error: {trained_run / 'checkpoint.pt'}: trained on other images than the mnist images "
                            "given (--data-dir; SHA-256 ")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_run_records_the_arithmetic_auto_chose_and_keeps_it(capsys, digits_dir, trained_run):
    assert load_checkpoint(trained_run / "checkpoint.pt")["config"].precision == "fp32"  # auto, on the CPU
    code = train_main(["--resume", "--out", str(trained_run), "--data-dir", str(digits_dir), "--precision", "bf16"])
    assert code == 2
    assert "error: --precision bf16: the checkpoint's 2 epochs were trained with fp32" in capsys.readouterr().err


def test_bf16_trains_the_same_run_in_other_arithmetic(tmp_path, digits_dir):
    common = ["--preset", "tiny", "--data-dir", str(digits_dir), "--epochs", "1", "--seed", "3", "--device", "cpu"]
    runs = {}
    for precision in ("fp32", "bf16"):
        result = run("training", *common, "--precision", precision, "--out", str(tmp_path / precision), env=ONE_THREAD)
        assert result.returncode == 0, result.stderr
        assert f"on cpu in {precision} -> " in result.stderr
        runs[precision] = final_state(tmp_path / precision)
    (state_32, weights_32), (state_16, weights_16) = runs["fp32"], runs["bf16"]
    assert state_16["config"].precision == "bf16"  # a resumed run keeps it
    assert state_16["step"] == state_32["step"] and torch.equal(state_16["rng"], state_32["rng"])
    differs = [name for name in weights_32 if not torch.equal(weights_16[name], weights_32[name])]
    assert differs, "bf16 autocast must change the arithmetic"
    assert all(torch.isfinite(weights).all() for weights in weights_16.values())


def test_alarms_name_the_symptoms():
    layout = PRESETS["mnist"].layout()
    healthy = alarms(layout, epoch=5, loss_d=1.1, metrics={"unused_values": []}, info_cat=2.2)
    assert healthy == []
    found = alarms(layout, epoch=5, loss_d=0.001, metrics={"unused_values": [3, 8]}, info_cat=0.4)
    assert len(found) == 3
    assert "collapsed" in found[0] and "far below H(c) = 2.303" in found[1] and "[3, 8]" in found[2]
    assert alarms(layout, epoch=1, loss_d=1.0, metrics={}, info_cat=0.1) == []  # too early to judge L_I


def test_evaluate_cli_prints_the_metrics(trained_run, digits_dir):
    result = run("training.evaluate", str(trained_run), "--data-dir", str(digits_dir), "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["images"] == 384 and 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["nmi"] <= 1
    assert metrics["info_cat_nats"] <= metrics["info_cat_bound_nats"]
    assert {e["factor"] for e in metrics["code_effects"].values()} <= {"slant", "thickness", None}
    missing = run("training.evaluate", str(trained_run / "nope"), "--data-dir", str(digits_dir))
    assert missing.returncode == 2 and "checkpoint not found" in missing.stderr


def test_contrastive_regulariser_trains_its_pair_classifier_and_measures_the_codes(tmp_path, digits_dir):
    out = tmp_path / "run"
    result = run("training", "--preset", "tiny", "--data-dir", str(digits_dir), "--out", str(out), "--epochs", "2",
                 "--cr-weight", "1", "--cr-start-epoch", "1")
    assert result.returncode == 0, result.stderr
    first, metrics = (json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines())
    assert first["pair_ce"] == 0  # plain InfoGAN for the first epoch
    assert 0 < metrics["pair_ce"] < 2  # then a 2-way choice's cross-entropy, learning from log 2
    assert set(metrics["code_effects"]) == {"c2", "c3"}
    assert "share of its main factor" in result.stderr  # the table is printed at the end of the run
    state = load_checkpoint(out / "checkpoint.pt")
    assert any(key.startswith("pair_classifier.") for key in state["discriminator"])


def test_contrastive_regulariser_needs_two_continuous_codes(tmp_path, capsys):
    assert train_main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), "--cr-weight", "1",
                       "--continuous", "1"]) == 2
    assert "--cr-weight 1: needs at least 2 continuous codes" in capsys.readouterr().err
    assert train_main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), "--cr-start-epoch", "5"]) == 2
    assert "--cr-start-epoch 5: needs --cr-weight above 0" in capsys.readouterr().err


def test_style_jitter_is_kept_by_the_checkpoint_and_refused_where_it_cannot_act(tmp_path, digits_dir, capsys):
    out = tmp_path / "run"
    result = run("training", "--preset", "tiny", "--data-dir", str(digits_dir), "--out", str(out), "--epochs", "1",
                 "--jitter-shear", "0.3", "--jitter-stroke", "0.45")
    assert result.returncode == 0, result.stderr
    config = load_checkpoint(out / "checkpoint.pt")["config"]
    assert (config.jitter_shear, config.jitter_stroke) == (0.3, 0.45)  # a resumed run keeps them
    assert 0 <= json.loads(result.stdout)["accuracy"] <= 1

    assert train_main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "x"), "--jitter-stroke", "1.5"]) == 2
    assert "--jitter-stroke 1.5: must be at most 1" in capsys.readouterr().err
    assert train_main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "x"), "--jitter-shear", "0.3",
                       "--categorical", ""]) == 2
    assert "the run has none" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_information_of_real_readings_is_logged_kept_and_refused_where_it_cannot_act(tmp_path, digits_dir, capsys):
    out = tmp_path / "run"
    result = run("training", "--preset", "tiny", "--data-dir", str(digits_dir), "--out", str(out), "--epochs", "1",
                 "--real-info-weight", "1")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert 0 < metrics["info_real_nats"] <= metrics["info_cat_bound_nats"]
    assert load_checkpoint(out / "checkpoint.pt")["config"].real_info_weight == 1  # a resumed run keeps it
    plain = run("training", "--preset", "tiny", "--data-dir", str(digits_dir), "--out", str(tmp_path / "plain"),
                "--epochs", "1")
    assert "info_real_nats" not in json.loads(plain.stdout)

    assert train_main(["--preset", "tiny", "--data-dir", str(tmp_path), "--out", str(tmp_path / "x"),
                       "--real-info-weight", "1", "--categorical", ""]) == 2
    assert "--real-info-weight: the term reads the categorical codes" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_reading_change_between_views_is_logged_kept_and_refused_where_it_cannot_act(tmp_path, digits_dir, capsys):
    out = tmp_path / "run"
    result = run("training", "--preset", "tiny", "--data-dir", str(digits_dir), "--out", str(out), "--epochs", "1",
                 "--translate", "2", "--consistency-weight", "1", "--view-mirror")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reading_change_nats"] > 0  # a mirrored, shifted digit reads differently
    config = load_checkpoint(out / "checkpoint.pt")["config"]
    assert (config.consistency_weight, config.view_mirror) == (1, True)  # a resumed run keeps them

    base = ["--preset", "tiny", "--data-dir", str(tmp_path), "--out", str(tmp_path / "x")]
    for flags, message in [
        (["--consistency-weight", "1"], "--consistency-weight: the second view would be the image itself"),
        (["--consistency-weight", "1", "--translate", "2", "--categorical", ""],
         "--consistency-weight: the term reads the categorical codes"),
        (["--view-mirror"], "--view-mirror: mirror images are only the second view of --consistency-weight"),
    ]:
        assert train_main(base + flags) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_identity_term_is_logged_kept_and_refused_where_it_cannot_act(tmp_path, digits_dir, capsys):
    out = tmp_path / "run"
    result = run("training", "--preset", "tiny", "--data-dir", str(digits_dir), "--out", str(out), "--epochs", "1",
                 "--identity-weight", "1", "--identity-range", "3")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert 0 < metrics["identity_ce"] < 2 * metrics["info_cat_bound_nats"]
    config = load_checkpoint(out / "checkpoint.pt")["config"]  # a resumed run keeps it
    assert (config.identity_weight, config.identity_range) == (1, 3)

    assert train_main(["--preset", "tiny", "--data-dir", str(tmp_path), "--out", str(tmp_path / "x"),
                       "--identity-weight", "1", "--continuous", "0"]) == 2
    assert "--identity-weight: the term reads the categorical codes" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_identity_term_waits_for_its_start_epoch_and_until_then_trains_as_without_it(tmp_path, digits_dir, capsys):
    common = ["--preset", "tiny", "--data-dir", str(digits_dir), "--seed", "2", "--device", "cpu"]
    delayed = run("training", *common, "--out", str(tmp_path / "delayed"), "--epochs", "2", "--identity-weight", "1",
                  "--identity-start-epoch", "1", env=ONE_THREAD)
    assert delayed.returncode == 0, delayed.stderr
    assert run("training", *common, "--out", str(tmp_path / "plain"), "--epochs", "1", env=ONE_THREAD).returncode == 0
    first, second = (json.loads(line) for line in (tmp_path / "delayed" / "metrics.jsonl").read_text().splitlines())
    plain = json.loads((tmp_path / "plain" / "metrics.jsonl").read_text())
    assert first["identity_ce"] == 0 < second["identity_ce"]
    assert (first["loss_d"], first["loss_g"], first["accuracy"]) == (plain["loss_d"], plain["loss_g"], plain["accuracy"])

    assert train_main(["--preset", "tiny", "--data-dir", str(tmp_path), "--out", str(tmp_path / "x"),
                       "--identity-weight", "1", "--identity-start-epoch", "2"]) == 2  # tiny trains 2 epochs
    assert "--identity-start-epoch 2: needs --identity-weight above 0 and fewer than" in capsys.readouterr().err


def test_weight_average_is_what_the_run_measures_and_exports(tmp_path, digits_dir, capsys):
    out, plain = tmp_path / "run", tmp_path / "plain"
    common = ["--preset", "tiny", "--data-dir", str(digits_dir), "--epochs", "2", "--seed", "3", "--device", "cpu"]
    result = run("training", *common, "--out", str(out), "--ema-decay", "0.9", env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert run("training", *common, "--out", str(plain), env=ONE_THREAD).returncode == 0
    state = load_checkpoint(out / "checkpoint.pt")
    # The average is only watched: a run with it trains exactly the weights the same run without it trains,
    # so one run compares the two models on one training path.
    _, with_average = final_state(out)
    _, without = final_state(plain)
    trained = [name for name in with_average if not name.split(".")[0].endswith("_average")]
    assert trained and sorted(trained) == sorted(without)
    for name in trained:
        torch.testing.assert_close(with_average[name], without[name], rtol=0, atol=0,
                                   msg=lambda detail, name=name: f"{name}: {detail}")
    assert state["config"].ema_decay == 0.9
    generator, discriminator = load_networks(state)
    for network, name in ((generator, "generator"), (discriminator, "discriminator")):
        weights = network.state_dict()
        assert all(torch.equal(weights[k], v) for k, v in state[f"{name}_average"].items())
        assert not all(torch.equal(weights[k], v) for k, v in state[name].items())  # not the last trained weights
    # The epoch's metrics were measured on the same networks that evaluate (and export) load.
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    evaluated = json.loads(run("training.evaluate", str(out), "--data-dir", str(digits_dir), "--json").stdout)
    assert evaluated["accuracy"] == last["accuracy"] and evaluated["label_map"] == json.loads(
        (out / "label_map.json").read_text())

    assert train_main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "x"), "--ema-decay", "1"]) == 2
    assert "--ema-decay 1: must be below 1" in capsys.readouterr().err

    # training.without_average turns the run into the one without the average: what `plain` wrote at its end.
    split = tmp_path / "split"
    result = run("training.without_average", str(out), "--out", str(split), "--data-dir", str(digits_dir), env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    split_state, split_weights = final_state(split)
    plain_state, plain_weights = final_state(plain)
    assert split_state["config"] == plain_state["config"] and split_weights.keys() == plain_weights.keys()
    assert all(torch.equal(split_weights[name], plain_weights[name]) for name in plain_weights)
    assert (split / "label_map.json").read_text() == (plain / "label_map.json").read_text()
    assert split_state["layout"] == plain_state["layout"]
    for key in ("accuracy", "nmi", "unused_values", "code_effects", "alarms"):
        assert split_state["history"][-1][key] == plain_state["history"][-1][key], key
    assert split_state["commands"][-1].startswith("python -m training.without_average")
    refused = run("training.without_average", str(plain), "--out", str(tmp_path / "y"), "--data-dir", str(digits_dir))
    assert refused.returncode == 2 and "keeps no weight average" in refused.stderr
    refused = run("training.without_average", str(out), "--out", str(out), "--data-dir", str(digits_dir))
    assert refused.returncode == 2 and "--out" in refused.stderr and "the run itself" in refused.stderr
    mid_epoch = tmp_path / "mid-epoch"  # weights of a later step than the last epoch's metrics describe
    mid_epoch.mkdir()
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    torch.save({**saved, "step": saved["step"] + 1}, mid_epoch / "checkpoint.pt")
    refused = run("training.without_average", str(mid_epoch), "--out", str(tmp_path / "z"), "--data-dir",
                  str(digits_dir))
    assert refused.returncode == 2 and "not at the end of an epoch" in refused.stderr
    assert not (tmp_path / "x").exists()
