"""Config: defaults, YAML and --set overrides, and one-line errors for bad keys and values."""

from __future__ import annotations

import pytest

from gankit.config import build_config, parse_sets, read_yaml
from gankit.errors import ConfigError


def test_defaults_are_the_seed_values():
    cfg = build_config()
    assert (cfg.train.lr_g, cfg.train.lr_d, cfg.train.beta1, cfg.train.beta2) == (1.5e-4, 1.5e-4, 0.5, 0.999)
    assert cfg.model.nz == 100 and cfg.model.init_std == 0.02


def test_layers_override_in_order(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr_g: 0.001\n  epochs: 3\nmodel:\n  nz: 64\n")
    cfg = build_config(read_yaml(f), parse_sets(["train.lr_g=1e-4", "data.flip=false"]), {"train": {"epochs": 7}})
    assert cfg.train.lr_g == 1e-4 and cfg.train.epochs == 7 and cfg.model.nz == 64 and cfg.data.flip is False


@pytest.mark.parametrize("layer, message", [
    ({"train": {"lr": 1}}, "unknown config key 'train.lr'"),
    ({"trian": {}}, "did you mean train"),
    ({"train": {"lr_g": "fast"}}, "train.lr_g must be float"),
    ({"train": {"lr_g": -1e-4}}, "train.lr_g must be > 0"),
    ({"train": {"lr_d": 0}}, "train.lr_d must be > 0"),
    ({"train": {"batch_size": 1.5}}, "train.batch_size must be int"),
    ({"train": {"epochs": True}}, "train.epochs must be int"),
    ({"train": {"beta1": 1.0}}, r"train.beta1 must be in \[0, 1\)"),
    ({"train": {"precision": "fp8"}}, "must be one of auto, fp32, bf16, fp16"),
    ({"data": {"resolution": 2000}}, "from 16 to 1024"),
    ({"data": {"resolution": 8}}, "from 16 to 1024"),
    ({"train": {"loss": "wgan_gp"}}, "model.d_norm=layer"),
    ({"train": {"augment": "color,zoom"}}, "unknown op .zoom."),
    ({"model": {"g_dropout": 1.0}}, r"model.g_dropout must be in \[0, 1\)"),
    ({"model": {"leaky_slope": 1.0}}, r"model.leaky_slope must be in \[0, 1\)"),
    ({"model": {"leaky_slope": -0.3}}, r"model.leaky_slope must be in \[0, 1\)"),
    ({"model": {"bn_momentum": 0}}, "model.bn_momentum must be > 0"),  # running statistics that never move
    ({"model": {"bn_momentum": 1.5}}, r"model.bn_momentum must be in \[0, 1\]"),
    ({"model": {"bn_eps": 0}}, "model.bn_eps must be > 0"),
    ({"train": {"eps": -1e-8}}, "train.eps must be > 0"),
    ({"train": {"n_critic": 0}}, "train.n_critic must be > 0"),
    ({"train": {"device": "tpu"}}, "train.device"),
    ({"model": 3}, "is a section"),
    ({"data": {"label_column": "type1"}}, "needs data.labels"),
])
def test_bad_values_are_one_line_errors(layer, message):
    with pytest.raises(ConfigError, match=message) as e:
        build_config(layer)
    assert "\n" not in str(e.value)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        build_config({"model": {"width": 3}})
    assert "model.ngf" in str(e.value) and "model.nz" in str(e.value)


@pytest.mark.parametrize("item, meant", [
    ("lr_g=1e-4", "train.lr_g"),  # a key of another section at the top (`lr_g:` unindented in a file)
    ("model.batch_size=8", "train.batch_size"),  # not model.palette_size, the closest of model's own keys
    ("train.ngf=16", "model.ngf"),
    ("lr=1e-4", "train.lr_g"),  # close to another section's key
    ("model.ngff=16", "model.ngf"),  # close to a key of its own section
])
def test_an_unknown_key_names_the_key_it_likely_meant_in_any_section(item, meant):
    with pytest.raises(ConfigError, match=rf"\(did you mean {meant}\?\)"):
        build_config(parse_sets([item]))


def test_a_dotted_key_in_a_yaml_file_says_to_nest_it(tmp_path):
    """`train.lr_g: 1e-4` (--set's spelling) in a file was "unknown config key 'train.lr_g' (did you mean train?)"."""
    path = tmp_path / "c.yaml"
    for text in ("train.lr_g: 0.001\n", "train:\n  train.lr_g: 0.001\n"):
        path.write_text(text)
        with pytest.raises(ConfigError, match=r"\(a file nests each key under its section: write lr_g: indented under "
                                              r"train:\); valid keys"):
            build_config(read_yaml(path))


def test_set_syntax_and_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_sets(["train.lr_g"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(bad)
    with pytest.raises(ConfigError, match="not found"):
        read_yaml(tmp_path / "missing.yaml")
    # a folder, as `--config configs` gives, is not "not found": it is said to be one, and its recipes named
    (tmp_path / "configs").mkdir()
    with pytest.raises(ConfigError, match=r"^config file '.*configs' is a folder: pass --config a YAML file \(see configs/\)$"):
        read_yaml(tmp_path / "configs")
    for name in ("b.yaml", "a.yml", "notes.txt"):
        (tmp_path / "configs" / name).write_text("train:\n  epochs: 1\n")
    with pytest.raises(ConfigError) as e:
        read_yaml(tmp_path / "configs")
    assert str(e.value) == (f"config file '{tmp_path / 'configs'}' is a folder: pass --config one of the YAML files in it: "
                            f"{tmp_path / 'configs' / 'a.yml'}, {tmp_path / 'configs' / 'b.yaml'}")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"mapping of sections \(data:, model:, train:, log:, eval:\)"):  # every one
        read_yaml(lst)


def test_text_that_yaml_reads_as_another_type_is_taken_or_said_to_need_quotes(tmp_path):
    """YAML 1.1 reads an unquoted date as a date (taken as written, like `name: 2024`) and on/off, yes/no, 1.5 as a
    boolean or number, which a text key names with the quotes it needs."""
    path = tmp_path / "c.yaml"
    path.write_text("name: 2024-01-01\n")
    assert build_config(read_yaml(path)).name == "2024-01-01"
    for text, said in (("train:\n  augment: off\n", "train.augment must be str, got False: YAML reads an unquoted yes, "
                                                     "no, on, off, true or false as a boolean: quote the text"),
                       ("name: 1.5\n", "name must be str or null, got 1.5: YAML reads it unquoted as a number: quote the text")):
        path.write_text(text)
        with pytest.raises(ConfigError) as e:
            build_config(read_yaml(path))
        assert str(e.value) == said


def test_set_values_are_typed():
    cfg = build_config(parse_sets(["train.lr_g=1e-4", "train.epochs=3", "data.flip=false", "data.labels=null"]))
    assert (cfg.train.lr_g, cfg.train.epochs, cfg.data.flip, cfg.data.labels) == (1e-4, 3, False, None)
    assert type(cfg.train.lr_g) is float and type(cfg.train.epochs) is int


def test_a_yaml_file_reads_what_set_reads(tmp_path):
    """YAML 1.1 reads 1e-4 (no dot) as a string and 2024 as a number: a file says them as --set does."""
    path = tmp_path / "c.yaml"
    path.write_text("name: 2024\ntrain:\n  lr_g: 1e-4\n  lr_d: 2E-4\n  augment: 'color, cutout'\n")
    from_file = build_config(read_yaml(path))
    from_set = build_config(parse_sets(["name=2024", "train.lr_g=1e-4", "train.lr_d=2E-4", "train.augment=color, cutout"]))
    for cfg in (from_file, from_set):
        assert (cfg.name, cfg.train.lr_g, cfg.train.lr_d, cfg.train.augment) == ("2024", 1e-4, 2e-4, "color,cutout")
    with pytest.raises(ConfigError, match="train.lr_g must be float, got '1e-4x'"):
        build_config({"train": {"lr_g": "1e-4x"}})
    with pytest.raises(ConfigError, match="finite"):
        build_config({"train": {"lr_g": "inf"}})
    with pytest.raises(ConfigError, match="train.epochs must be int"):
        build_config({"train": {"epochs": "3"}})


def test_numbers_yaml_1_1_reads_in_octal_or_base_60_are_read_as_written_or_said(tmp_path):
    """YAML 1.1 reads 010 as 8 (octal) and 1:30 as 90 (base 60): a number key reads 010 as 10 and says 1:30 is no plain
    number, a name keeps either as written (007 was '7'); in a file as with --set."""
    path = tmp_path / "c.yaml"
    path.write_text("name: 007\nmodel:\n  ngf: 010\n  ndf: 09\n")
    for cfg in (build_config(read_yaml(path)), build_config(parse_sets(["name=007", "model.ngf=010", "model.ndf=09"]))):
        assert (cfg.name, cfg.model.ngf, cfg.model.ndf) == ("007", 10, 9)
    assert build_config(parse_sets(["name=1:30", "model.ngf=0x10"])).name == "1:30"
    path.write_text("train:\n  max_steps: 1:30\n")
    for layer in (read_yaml(path), parse_sets(["train.max_steps=1:30"])):
        with pytest.raises(ConfigError) as e:
            build_config(layer)
        assert str(e.value) == ("train.max_steps must be int or null, got '1:30': write a plain number (YAML 1.1 would "
                                "read 1:30 in base 60, as 90)")


def test_an_augmentation_given_as_a_yaml_list_is_its_comma_list(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  augment: [color, cutout]\n")
    for layer in (read_yaml(path), parse_sets(["train.augment=[color, cutout]"])):
        assert build_config(layer).train.augment == "color,cutout"  # was: must be str, got ['color', 'cutout']
    assert build_config({"train": {"augment": []}}).train.augment == ""
    with pytest.raises(ConfigError, match="unknown op 'colour'"):
        build_config({"train": {"augment": ["colour"]}})


def test_an_augmentation_list_with_spaces_trains():
    from gankit.data.augment import DiffAugment

    assert DiffAugment(" color, cutout ").ops == ["color", "cutout"]
    with pytest.raises(ConfigError, match="unknown op 'colour'"):
        build_config({"train": {"augment": "colour, cutout"}})


@pytest.mark.parametrize("name", ["../escape", "/tmp/x", "a/../../b", "~/x", " "])
def test_a_run_name_stays_under_runs(name):
    with pytest.raises(ConfigError, match="name must be a folder name under runs/.*--run DIR"):
        build_config({"name": name})
    assert build_config({"name": "pokemon/try2"}).name == "pokemon/try2"


def test_memory_format_defaults_per_device_and_compile():
    """NHWC by default on CPU and CUDA; NCHW for models compiled on CUDA (Inductor's compiled backward
    rejected cuDNN's NHWC weight gradient there, benchmarks/gpu_check.sh); an explicit setting wins."""
    import torch

    from gankit.device import memory_format

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert memory_format(None, cpu) == memory_format(None, cpu, compiled=True) == torch.channels_last
    assert memory_format(None, cuda) == torch.channels_last
    assert memory_format(None, cuda, compiled=True) == torch.contiguous_format
    assert memory_format(True, cuda, compiled=True) == torch.channels_last
    assert memory_format(False, cpu) == torch.contiguous_format


def test_bf16_on_a_cpu_without_it_warns_that_it_is_emulated(monkeypatch, capsys):
    import torch

    from gankit import device

    cpu = torch.device("cpu")
    for native in (False, True):
        monkeypatch.setattr(device, "cpu_has_bf16", lambda: native)
        assert device.resolve_precision("bf16", cpu) == torch.bfloat16
        assert ("emulated" in capsys.readouterr().err) is not native
        assert device.resolve_precision("auto", cpu) == (torch.bfloat16 if native else None)


def test_a_resume_shows_progress_unless_told_not_to_again(tmp_path):
    """--no-progress is how one invocation shows itself: a resume of a run started with it shows progress again."""
    from gankit.config import save_yaml
    from gankit.train import resolve_config

    save_yaml(build_config({"log": {"progress": False}, "train": {"epochs": 3}}), tmp_path / "config.yaml")
    cfg, resuming = resolve_config([{}], tmp_path)
    assert resuming and cfg.log.progress and cfg.train.epochs == 3
    cfg, _ = resolve_config([{"log": {"progress": False}}], tmp_path)
    assert not cfg.log.progress


@pytest.mark.parametrize("train, message", [
    ({"loss": "hinge", "label_smoothing": 0.1}, "train.label_smoothing sets BCE targets: it needs train.loss bce, not hinge"),
    ({"loss": "wgan", "label_smoothing": 0.1}, "it needs train.loss bce, not wgan"),
    ({"loss": "hinge", "relativistic": True, "label_smoothing": 0.1}, "it needs train.loss bce, not hinge"),
    ({"loss": "wgan", "label_smoothing": 0.1, "label_smoothing_two_sided": True}, "train.label_smoothing sets"),
    ({"loss": "hinge", "label_smoothing_two_sided": True}, "train.label_smoothing_two_sided sets BCE targets"),
])
def test_label_smoothing_without_bce_is_refused(train, message):
    """Label smoothing with a wgan or hinge loss trained exactly as without it, and config.yaml recorded it."""
    with pytest.raises(ConfigError, match=message) as e:
        build_config({"train": train})
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="not wgan_gp"):
        build_config({"model": {"d_norm": "layer"}, "train": {"loss": "wgan_gp", "label_smoothing": 0.1}})


def test_label_smoothing_with_relativistic_bce_is_kept_and_moves_its_targets():
    import torch

    from gankit.losses import build_loss

    cfg = build_config({"train": {"loss": "bce", "relativistic": True, "label_smoothing": 0.1}})
    real, fake = torch.tensor([2.0, 1.0]), torch.tensor([-1.0, 0.5])
    plain = build_loss(build_config({"train": {"loss": "bce", "relativistic": True}}))
    assert build_loss(cfg).d_loss(real, fake) != plain.d_loss(real, fake)


def test_a_trained_runs_config_with_an_ignored_setting_still_loads_for_sampling():
    """A run an older gankit trained with label smoothing on a hinge loss (ignored then) still samples."""
    from gankit.config import from_dict

    cfg = from_dict({"train": {"loss": "hinge", "label_smoothing": 0.1}})
    assert cfg.train.loss == "hinge"


@pytest.mark.parametrize("augment", ["", " , "])
def test_adaptive_augmentation_without_ops_is_refused(augment):
    """train.ada_target > 0 with no train.augment trained without any augmentation, silently."""
    with pytest.raises(ConfigError, match="train.ada_target: .*set train.augment \\(e.g. color,translation,cutout\\)") as e:
        build_config({"train": {"ada_target": 0.6, "augment": augment}})
    assert "\n" not in str(e.value)
    assert build_config({"train": {"ada_target": 0.6, "augment": "color"}}).train.ada_target == 0.6


def test_a_label_column_with_folder_labels_is_refused():
    """--labels folders takes each image's class from its folder; a --label-column with it was silently ignored."""
    with pytest.raises(ConfigError, match="data.label_column 'type1' names a column of a CSV file.*drop "
                                          "--label-column") as e:
        build_config({"data": {"labels": "folders", "label_column": "type1"}})
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="needs data.labels: pass --labels FILE.csv$"):
        build_config({"data": {"label_column": "type1"}})
    assert build_config({"data": {"labels": "t.csv", "label_column": "type1"}}).data.label_column == "type1"


@pytest.mark.parametrize("layer, named", [
    ({"train": {"n_critic": 3}}, "train.n_critic (only with train.strategy critic)"),
    ({"train": {"critic_boost": 100}}, "train.critic_boost (only with train.strategy critic)"),
    ({"train": {"strategy": "critic", "critic_boost_first": 10}},
     "train.critic_boost_first (only with train.strategy critic and train.critic_boost > 0)"),
    ({"train": {"critic_boost_every": 100}}, "train.critic_boost_every (only with train.strategy critic and"),
    ({"train": {"clip": 0.02}}, "train.clip (only with train.loss wgan)"),
    ({"train": {"loss": "wgan", "gp_lambda": 5.0}}, "train.gp_lambda (only with train.loss wgan_gp)"),
    ({"model": {"palette_size": 8}}, "model.palette_size (only with model.upsample colorpicker)"),
    ({"model": {"embed_dim": 10}}, "model.embed_dim (only with model.arch acgan)"),
    ({"train": {"aux_weight": 2.0}}, "train.aux_weight (only with model.arch acgan)"),
    ({"train": {"monitor_factor": 0.5}}, "train.monitor_factor (only with train.strategy monitored)"),
    ({"train": {"boost_window": 10}}, "train.boost_window (only with train.strategy boost)"),
    ({"train": {"instance_noise_epochs": 5}}, "train.instance_noise_epochs (only with train.instance_noise > 0)"),
    ({"train": {"topk_gamma": 0.9}}, "train.topk_gamma (only with train.topk < 1)"),
    ({"train": {"ema_standing_stats": False}}, "train.ema_standing_stats (only with train.ema > 0)"),
    ({"train": {"lr_decay_start": 0.2}}, "train.lr_decay_start (only with train.lr_decay linear)"),
    ({"train": {"compile_mode": "max-autotune"}}, "train.compile_mode (only with train.compile true)"),
    ({"model": {"mbd_kernel_dim": 3}}, "model.mbd_kernel_dim (only with model.mbd_features > 0)"),
    ({"model": {"init": "xavier", "init_std": 0.01}}, "model.init_std (only with model.init normal)"),
    ({"train": {"augment_p": 0.5}}, "train.augment_p (only with train.augment set)"),
    ({"train": {"label_smoothing_two_sided": True}}, "train.label_smoothing_two_sided (only with train.label_smoothing > 0)"),
    ({"model": {"kernel": 5, "upsample": "upsample", "d_downsample": "maxpool"}},
     "model.kernel (only with model.upsample convtranspose or model.d_downsample stride)"),
    ({"train": {"optimizer": "rmsprop", "beta1": 0.0}}, "train.beta1 (only with train.optimizer adam)"),
    ({"train": {"optimizer": "rmsprop", "beta2": 0.9}}, "train.beta2 (only with train.optimizer adam)"),
    ({"train": {"rmsprop_alpha": 0.9}}, "train.rmsprop_alpha (only with train.optimizer rmsprop)"),
    # D's BatchNorm statistics are never used (D always trains); EMA G's standing statistics are measured afresh
    ({"model": {"g_norm": "none", "bn_momentum": 0.01}}, "model.bn_momentum (only with model.g_norm batch or selfmod, and"),
    ({"train": {"ema": 0.999}, "model": {"bn_momentum": 0.01}}, "model.bn_momentum (only with model.g_norm batch or selfmod, and"),
    ({"model": {"g_norm": "none", "d_norm": "layer", "bn_eps": 1e-3}},
     "model.bn_eps (only with model.g_norm batch or selfmod, or model.d_norm batch)"),
    ({"train": {"nan_policy": "stop", "nan_lr_factor": 0.1}}, "train.nan_lr_factor (only with train.nan_policy rollback)"),
    # FID/KID is off on a CPU unless eval.every is set: its settings were ignored without a word there
    *[({"train": {"device": "cpu"}, "eval": {key: value}}, f"eval.{key} (only with eval.every > 0 (FID/KID is off on a CPU")
      for key, value in (("n_fake", 500), ("n_real", 2000), ("share", 0.5), ("inception_weights", "pt_inception.pt"))],
    ({"eval": {"every": 0, "n_fake": 500}}, "eval.n_fake (only with eval.every > 0"),
])
def test_a_setting_of_a_feature_that_is_off_is_named_with_why(layer, named):
    """Such settings were accepted with no word, unlike model.num_classes and train.sync_batchnorm."""
    from gankit.config import inert_settings

    found = inert_settings([layer], build_config(layer))
    assert len(found) == 1 and found[0].startswith(named), found


def test_settings_without_effect_are_one_warning_line_and_defaults_or_active_ones_none(capsys):
    from gankit.config import inert_settings, warn_settings

    recipe, sets = {"train": {"clip": 0.02, "strategy": "classic"}}, {"train": {"n_critic": 3, "lr_g": 1e-4}}
    cfg = build_config(recipe, sets)
    lines = warn_settings([recipe, sets], cfg)
    err = capsys.readouterr().err
    assert err == "warning: these settings have no effect here: train.n_critic (only with train.strategy critic), " \
                  "train.clip (only with train.loss wgan)\n" and lines == [err[len("warning: "):-1]]
    # the defaults said again, settings whose feature is on, and values the user did not set (a resumed run's
    # config.yaml, a dataset's defaults) are not named
    said_again = {"train": {"clip": 0.01, "n_critic": 5, "gp_lambda": 10.0}, "model": {"palette_size": 16}}
    assert inert_settings([said_again], build_config(said_again)) == []
    active = {"train": {"loss": "wgan", "clip": 0.02, "strategy": "critic", "n_critic": 3}}
    assert inert_settings([active], build_config(active)) == []
    for acting in ({"model": {"bn_momentum": 0.01, "bn_eps": 1e-3}},  # G's BatchNorm (samples use its statistics)
                   {"model": {"bn_momentum": 0.01}, "train": {"ema": 0.999, "ema_standing_stats": False}},  # EMA G averages G's
                   {"model": {"g_norm": "none", "bn_eps": 1e-3}}):  # D's BatchNorm normalises with it
        assert inert_settings([acting], build_config(acting)) == [], acting
    assert inert_settings([{}, {"train": {"lr_g": 1e-4}}], build_config({"train": {"clip": 0.02}})) == []
    assert warn_settings([], build_config()) == [] and capsys.readouterr().err == ""
    evaluating = [{"eval": {"n_fake": 500}, "train": {"device": "cpu"}}, {"eval": {"every": 2}}]
    assert inert_settings(evaluating, build_config(*evaluating)) == []


@pytest.mark.parametrize("loss", ["wgan", "wgan_gp"])
def test_the_monitored_strategy_with_a_wasserstein_loss_warns(loss, capsys):
    from gankit.config import warn_settings

    cfg = build_config({"model": {"d_norm": "layer"}, "train": {"loss": loss, "strategy": "monitored"}})
    (line,) = warn_settings([{}], cfg)
    assert "train.strategy monitored" in line and f"means little for train.loss {loss}" in line
    assert capsys.readouterr().err.count("\n") == 1
    assert warn_settings([{}], build_config({"train": {"strategy": "monitored"}})) == []


def test_an_empty_value_for_a_text_key_is_the_empty_text():
    """`--set train.augment=` (turning DiffAugment off) was refused: "train.augment cannot be null: give a str"."""
    assert build_config(parse_sets(["train.augment=color", "train.augment="])).train.augment == ""
    with pytest.raises(ConfigError, match="train.lr_g cannot be null: give a float$"):
        build_config(parse_sets(["train.lr_g="]))
    with pytest.raises(ConfigError, match="train.epochs cannot be null: give an int$"):  # (was "a int")
        build_config(parse_sets(["train.epochs="]))


def test_the_defaults_are_the_write_ups_hyper_parameters():
    """The values seeds 000, 002 and 004 give, which runs relying on the defaults (not a recipe) get."""
    t = build_config({}).train
    assert (t.lr_g, t.lr_d, t.beta1, t.beta2) == (1.5e-4, 1.5e-4, 0.5, 0.999)  # seed 000 "classic": Adam
    assert t.monitor_factor == 0.8 and t.boost_window == 100  # seed 000: D only if D_loss > 0.8 G_loss; boosts of 100
    assert (t.n_critic, t.critic_boost_first, t.critic_boost_every) == (5, 25, 500)  # seed 004's critic schedule
    assert t.clip == 0.01 and t.gp_lambda == 10.0  # WGAN's clipping, WGAN-GP's lambda


@pytest.mark.parametrize("layer, message", [
    ({"train": {"seed": 2**32}}, "train.seed must be a whole number from 0 to 4294967295"),
    ({"train": {"ema": 1.0}}, r"train.ema must be in \[0, 1\)"),  # G's average would never move
    ({"log": {"write_share": 1.5}}, r"log.write_share must be in \[0, 1\]"),
    ({"eval": {"n_fake": 0}}, "eval.n_fake must be > 0"),
    ({"eval": {"n_fake": 1}}, "eval.n_fake must be at least 2"),  # was refused after the training before the first FID
    ({"eval": {"n_real": 1}}, "eval.n_real must be at least 2"),
    ({"log": {"grids_per_epoch": 0}}, "log.grids_per_epoch must be > 0"),
    ({"eval": {"every": -1}}, "eval.every must be >= 0"),
    ({"log": {"checkpoint_minutes": -1}}, "log.checkpoint_minutes must be >= 0"),
    ({"data": {"flip": 1}}, "data.flip must be bool or null, got 1"),
    ({"train": {"lr_g": True}}, "train.lr_g must be float, got True"),
    ({"train": {"label_noise": 0.5, "label_smoothing": 0.5}}, r"label_noise \+ train.label_smoothing must stay under 1"),
    ({"train": {"loss": "wgan", "relativistic": True}}, "train.relativistic works with train.loss bce or hinge, not wgan"),
    ({"model": {"d_norm": "layer"}, "train": {"d_split": True, "fuse_d": True}},
     "train.d_split .* but a fused D forward scores both batches at once: drop train.d_split"),
    ({"train": {"device": "cuda:x"}}, "train.device must be auto, cpu, cuda, cuda:N or mps, got 'cuda:x'"),
    ({"train": {"device": "cuda0"}}, "train.device must be auto, cpu, cuda, cuda:N or mps"),
    ({"train": {"compile": True, "compile_mode": "fast"}},
     "train.compile_mode must be one of default, reduce-overhead, max-autotune; got 'fast'"),
    ({"model": {"kernel": 3}}, "model.kernel must be one of 4, 5; got 3"),
    ({"eval": {"fake_classes": "balanced"}}, "eval.fake_classes must be one of data, uniform; got 'balanced'"),
])
def test_more_bad_values_are_one_line_errors(layer, message):
    with pytest.raises(ConfigError, match=message) as e:
        build_config(layer)
    assert "\n" not in str(e.value)


def test_the_ends_of_each_range_are_accepted():
    cfg = build_config({"train": {"seed": 2**32 - 1, "topk": 1.0, "label_noise": 0.4, "label_smoothing": 0.5},
                        "data": {"resolution": 1024}, "log": {"write_share": 1.0, "checkpoint_minutes": 0},
                        "eval": {"every": 0}})
    assert (cfg.train.seed, cfg.data.resolution, cfg.log.write_share) == (2**32 - 1, 1024, 1.0)
    assert build_config(parse_sets(["train.device=cuda:1"])).train.device == "cuda:1"


@pytest.mark.parametrize("change, named", [
    ({"train": {"batch_size": 16}}, "train.batch_size: 8 -> 16"),
    ({"train": {"seed": 1}}, "train.seed: 0 -> 1"),
    ({"train": {"lr_g": 1e-3}}, "train.lr_g: 0.00015 -> 0.001"),
    ({"train": {"sync_batchnorm": True}}, "train.sync_batchnorm: False -> True"),
    ({"model": {"nz": 8}}, "model.nz: 100 -> 8"),
    ({"data": {"resolution": 32}}, "data.resolution: 16 -> 32"),
])
def test_a_resume_refuses_a_change_of_what_was_trained(tmp_path, change, named):
    from gankit.config import save_yaml
    from gankit.errors import RunError
    from gankit.train import resolve_config

    save_yaml(build_config({"data": {"resolution": 16}, "train": {"batch_size": 8}}), tmp_path / "config.yaml")
    with pytest.raises(RunError, match=f"different config \\({named}\\)"):
        resolve_config([change], tmp_path)


def test_a_resume_names_how_many_more_keys_differ_than_it_lists(tmp_path):
    from gankit.config import save_yaml
    from gankit.errors import RunError
    from gankit.train import resolve_config

    save_yaml(build_config({"data": {"resolution": 16}}), tmp_path / "config.yaml")
    change = {"data": {"resolution": 32}, "train": {"seed": 1, "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.9, "batch_size": 8}}
    with pytest.raises(RunError, match=r"different config \(data.resolution: 16 -> 32; [^;]+; [^;]+; [^;]+; and 2 more\)"):
        resolve_config([change], tmp_path)


@pytest.mark.parametrize("saved, change, key, value", [
    ({"model": {"d_norm": "none"}, "train": {"fuse_d": False}}, {"train": {"fuse_d": True}}, "fuse_d", True),
    ({"model": {"d_norm": "none"}}, {"train": {"epochs": 5, "fuse_d": True}}, "epochs", 5),
])
def test_a_resumes_overrides_are_checked_on_top_of_the_run_not_alone(tmp_path, saved, change, key, value):
    """`--set train.fuse_d=true` alone (on the defaults' BatchNorm D) is refused, but on the run's D without BatchNorm it
    is a change a resume may make (run_training builds its launch settings and data defaults unchecked)."""
    from gankit.config import save_yaml
    from gankit.train import _data_defaults, resolve_config

    with pytest.raises(ConfigError, match="train.fuse_d needs a D"):
        build_config(change)
    save_yaml(build_config(saved), tmp_path / "config.yaml")
    cfg, resuming = resolve_config([change], tmp_path, _data_defaults([change]))
    assert resuming and getattr(cfg.train, key) == value


@pytest.mark.parametrize("change, named", [
    ({"train": {"loss": "wgan_gp"}}, "train.loss: 'bce' -> 'wgan_gp'"),
    ({"train": {"ada_target": 0.5}}, "train.ada_target: 0.6 -> 0.5"),
])
def test_a_resume_that_would_make_a_bad_combination_says_what_it_changes(tmp_path, change, named):
    """A change the run cannot take is named as such, not as the combination it makes with the run's other settings
    (WGAN-GP with the run's BatchNorm D)."""
    from gankit.config import save_yaml
    from gankit.errors import RunError
    from gankit.train import resolve_config

    save_yaml(build_config({"train": {"augment": "color", "ada_target": 0.6}}), tmp_path / "config.yaml")
    with pytest.raises(RunError, match=f"different config \\({named}"):
        resolve_config([change], tmp_path)


@pytest.mark.parametrize("key, flag", [("path", "--data"), ("labels", "--labels"), ("label_column", "--label-column")])
def test_an_empty_data_setting_is_refused(key, flag):
    """`--data ""` (an unset shell variable) read the current folder as the dataset."""
    with pytest.raises(ConfigError, match=f"data.{key} is empty: give {flag} a value, or leave it out"):
        build_config({"data": {"path": "x", "labels": "x.csv", key: " "}})


def test_a_resume_takes_every_resumable_change(tmp_path):
    """RESUMABLE_CHANGES: how long to train, where and how fast, and what to log or evaluate."""
    from gankit.config import save_yaml
    from gankit.train import resolve_config

    save_yaml(build_config({"train": {"batch_size": 8}}), tmp_path / "config.yaml")
    change = {"name": "other", "train": {"epochs": 50, "max_steps": 9, "minutes": 5.0, "device": "cpu",
                                        "precision": "fp32", "deterministic": True, "fuse_d": False,
                                        "gemm_wgrad": False, "thin_conv": False, "compile": True,
                                        "compile_mode": "max-autotune", "ema_standing_stats": False},
              "log": {"every": 7, "checkpoint_every": 2}, "eval": {"every": 3, "n_fake": 50}}
    cfg, resuming = resolve_config([change], tmp_path)
    assert resuming and (cfg.name, cfg.train.max_steps, cfg.train.compile_mode, cfg.log.every, cfg.eval.n_fake) == \
        ("other", 9, "max-autotune", 7, 50)


def test_a_yaml_syntax_error_names_its_line_as_an_editor_counts_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr_g: 0.1\n  epochs: 3: 4\n")
    with pytest.raises(ConfigError, match="is not valid YAML at line 3: fix the syntax"):
        read_yaml(bad)


def test_a_recipe_named_without_its_folder_or_yaml_suffix_is_found_for_the_user(tmp_path, monkeypatch):
    """`--config fast_small_data` (a preset's name, as its comment says it) names the file it likely meant."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "pokemon64_wgan_gp.yaml").write_text("train:\n  epochs: 1\n")
    for given in ("pokemon64_wgan_gp", "configs/pokemon64_wgan_gp", "configs/pokemon64_wgan-gp.yaml"):
        with pytest.raises(ConfigError, match=rf"^config file '{given}' not found: did you mean --config "
                                              r"configs/pokemon64_wgan_gp\.yaml\?$"):
            read_yaml(given)
    with pytest.raises(ConfigError, match="not found: pass an existing YAML file to --config"):
        read_yaml("nothing_like_it")


def test_a_typo_in_a_recipes_name_suggests_the_one_it_plainly_means(tmp_path, monkeypatch):
    """`--config configs/pokemon64_dcgan_clasic.yaml` suggested _classic, then three names far behind it: the one alone
    where only it is very close; several where none or more than one is, and a family's members all."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    for stem in ["pokemon256_dcgan", "pokemon64_wgan_clip", "pokemon64_wgan_gp", "pokemon64_dcgan_boosting",
                 "pokemon64_dcgan_classic", "birds64_wgan_clip", "birds64_dcgan"]:
        (tmp_path / "configs" / f"{stem}.yaml").write_text("train:\n  epochs: 1\n")
    for given, meant in (("pokemon64_dcgan_clasic", ["pokemon64_dcgan_classic"]),
                         ("pokemon64_wgan", ["pokemon64_wgan_gp", "pokemon64_wgan_clip"]),  # a family, near or not
                         ("birds64_wgan_gp", ["birds64_wgan_clip", "birds64_dcgan", "pokemon64_wgan_gp"])):
        with pytest.raises(ConfigError) as e:
            read_yaml(f"configs/{given}.yaml")
        said = str(e.value).split("did you mean --config ")[1].rstrip("?").replace(" or ", ", ").split(", ")
        assert sorted(said) == sorted(f"configs/{stem}.yaml" for stem in meant), (given, said)


def test_a_recipe_that_names_a_family_of_presets_suggests_its_members_in_one_line(tmp_path, monkeypatch):
    """`--config configs/pokemon64_dcgan.yaml` suggested pokemon256_dcgan.yaml alone (difflib's closest), not the
    pokemon64_dcgan_classic / _boosting... the user likely meant: the few names that go on from the one given, else
    the few closest (RECIPES_MEANT)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    family = ["pokemon64_dcgan_boosting", "pokemon64_dcgan_classic", "pokemon64_dcgan_dropout"]
    for stem in ["pokemon256_dcgan", "pokemon64_wgan_gp", *family]:
        (tmp_path / "configs" / f"{stem}.yaml").write_text("train:\n  epochs: 1\n")
    with pytest.raises(ConfigError) as e:
        read_yaml("configs/pokemon64_dcgan.yaml")
    said = str(e.value).split("did you mean --config ")[1]
    assert "\n" not in said and "pokemon256" not in said and said.endswith(".yaml?") and ", " in said and " or " in said
    assert sorted(said.rstrip("?").replace(" or ", ", ").split(", ")) == [f"configs/{stem}.yaml" for stem in family]
    from gankit.config import RECIPES_MEANT

    for i in range(RECIPES_MEANT + 2):
        (tmp_path / "configs" / f"pokemon64_dcgan_{i}.yaml").write_text("train:\n  epochs: 1\n")
    with pytest.raises(ConfigError) as e:
        read_yaml("configs/pokemon64_dcgan.yaml")
    assert str(e.value).count("configs/pokemon64_dcgan_") == RECIPES_MEANT  # a few, not all


def test_a_section_whose_keys_are_all_commented_out_sets_nothing(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  ngf: 16\ntrain:\n  # lr_g: 0.001\n")
    assert build_config(read_yaml(path)).model.ngf == 16
    path.write_text("train:\nlr_g: 0.001\n")  # not indented: the key is named where it belongs
    with pytest.raises(ConfigError, match=r"unknown config key 'lr_g' \(did you mean train.lr_g\?\)"):
        build_config(read_yaml(path))


def test_a_runs_saved_config_given_as_recipe_leaves_what_the_run_filled_in_to_the_new_one(tmp_path, capsys):
    """`--config runs/x/config.yaml` trains another run like x: not under x's name, nor without a progress bar because
    x's command hid it, nor warned that x's image channels are ignored on other data."""
    from gankit.config import read_recipe, save_yaml

    run = tmp_path / "x"
    run.mkdir()
    saved = build_config({"name": "x", "model": {"ngf": 8, "channels": 3}, "log": {"progress": False}})
    save_yaml(saved, run / "config.yaml")
    (run / "metrics.jsonl").write_text("")
    recipe = read_recipe(run / "config.yaml")
    assert capsys.readouterr().err == (f"'{run / 'config.yaml'}' is the config run '{run}' saved: taken as a recipe, "
                                       "without what that run filled in for itself (name, log.progress, model.channels, "
                                       "model.num_classes)\n")
    cfg = build_config(recipe)
    assert (cfg.name, cfg.log.progress, cfg.model.channels, cfg.model.ngf) == (None, True, None, 8)
    (run / "metrics.jsonl").unlink()  # not a run folder: a recipe that names them keeps them
    assert read_recipe(run / "config.yaml")["name"] == "x" and capsys.readouterr().err == ""


def test_a_runs_saved_config_given_as_recipe_leaves_what_the_run_filled_in_from_its_machine_and_data(tmp_path, capsys):
    """A run's config.yaml names on its first line what the run filled in (flips for a folder, fuse_d, the CPU kernels,
    FID off on a CPU): a recipe made from it leaves those to the new run, as it leaves the name; one the user set stays."""
    from gankit.config import filled_in, read_recipe, save_yaml

    run = tmp_path / "x"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    saved = build_config({"data": {"flip": True, "resolution": 32}, "model": {"d_norm": "none"},
                          "train": {"fuse_d": True, "gemm_wgrad": True, "thin_conv": True}, "eval": {"every": 0}})
    save_yaml(saved, run / "config.yaml", ["data.flip", "train.fuse_d", "train.gemm_wgrad", "train.thin_conv", "eval.every"])
    assert filled_in(run / "config.yaml") == ["data.flip", "train.fuse_d", "train.gemm_wgrad", "train.thin_conv", "eval.every"]
    recipe = read_recipe(run / "config.yaml")
    assert capsys.readouterr().err.endswith("without what that run filled in for itself (log.progress, "
                                            "model.num_classes, data.flip, train.fuse_d, "
                                            "train.gemm_wgrad, train.thin_conv, eval.every)\n")
    cfg = build_config(recipe, {"model": {"d_norm": "batch"}})  # was: train.fuse_d needs a D whose output ...
    assert (cfg.data.flip, cfg.train.fuse_d, cfg.train.gemm_wgrad, cfg.train.thin_conv, cfg.eval.every,
            cfg.data.resolution) == (None, None, None, None, None, 32)
    save_yaml(saved, run / "config.yaml")  # a run that names none (an older gankit's): its values are kept
    assert filled_in(run / "config.yaml") == [] and read_recipe(run / "config.yaml")["train"]["fuse_d"] is True


@pytest.mark.parametrize("text", ["", "# train:\n#   lr_g: 1e-4\n", "{}\n"])
def test_a_recipe_that_sets_nothing_says_so(tmp_path, capsys, text):
    from gankit.config import read_recipe

    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert read_recipe(path) == {}  # was: the defaults, without a word
    assert capsys.readouterr().err == (f"warning: config file '{path}' sets nothing (it is empty or holds only comments): "
                                       "the defaults are used\n")
    path.write_text("train:\n  lr_g: 1e-4\n")
    read_recipe(path)
    assert capsys.readouterr().err == ""


def test_a_yaml_file_indented_with_tabs_says_so(tmp_path):
    bad = tmp_path / "tabs.yaml"
    bad.write_text("train:\n\tlr_g: 0.1\n")
    with pytest.raises(ConfigError, match="is not valid YAML at line 2: indent with spaces, not tabs$"):
        read_yaml(bad)


@pytest.mark.parametrize("text, key, lines", [
    ("train:\n  lr_g: 0.1\n  lr_g: 0.2\n", "lr_g", "2 and 3"),
    ("train:\n  lr_g: 0.1\nmodel:\n  ngf: 8\ntrain:\n  lr_d: 0.2\n", "train", "1 and 5"),  # the first dropped whole
])
def test_a_key_given_twice_in_a_yaml_file_is_refused(tmp_path, text, key, lines):
    """PyYAML keeps the last of two equal keys without a word; a merge (<<) may still override one."""
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"gives '{key}' twice, at lines {lines} \(YAML would keep the second alone\)"):
        read_yaml(path)
    path.write_text("model:\n  ngf: &w 16\n  ndf: *w\ntrain:\n  <<: {lr_g: 0.1, lr_d: 0.2}\n  lr_g: 0.3\n")
    assert read_yaml(path) == {"model": {"ngf": 16, "ndf": 16}, "train": {"lr_g": 0.3, "lr_d": 0.2}}


@pytest.mark.parametrize("flags, native", [("avx2 avx512f avx512bw avx512_vnni", False), ("avx512f avx512_bf16", True),
                                           ("avx2 amx_tile amx_bf16", True)])
def test_native_bf16_is_read_from_the_cpus_flags(monkeypatch, flags, native):
    """AVX-512 alone emulates bf16: only avx512_bf16 or AMX make `--precision auto` pick it."""
    from gankit import device

    class FakePath:
        def __init__(self, name):
            assert name == "/proc/cpuinfo"

        def read_text(self, encoding=None, errors=None):
            return f"processor\t: 0\nflags\t\t: {flags}\n"

    monkeypatch.setattr(device, "Path", FakePath)
    device.cpu_has_bf16.cache_clear()
    try:
        assert device.cpu_has_bf16() is native
    finally:
        device.cpu_has_bf16.cache_clear()


def test_auto_takes_the_gpu_and_its_best_half_precision(monkeypatch):
    import torch

    from gankit import device

    cuda = torch.device("cuda")
    for bf16 in (True, False):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
        assert device.resolve_precision("auto", cuda) == (torch.bfloat16 if bf16 else torch.float16)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        device.resolve_precision("fp16", torch.device("cpu"))
    for available, expected in ((True, cuda), (False, torch.device("cpu"))):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        assert device.resolve_device("auto") == expected


def test_mps_is_a_device_when_the_mac_has_it(monkeypatch):
    """--device mps: taken where MPS is available, else one line naming what to use instead."""
    import torch

    from gankit import device
    from gankit.config import is_device_name

    assert is_device_name("mps")
    build_config({"train": {"device": "mps"}})
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert device.resolve_device("mps") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for cuda, instead in ((False, "--device cpu"), (True, "--device cuda")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        with pytest.raises(ConfigError, match=f"no Apple GPU \\(MPS\\) is available here: use {instead} or auto"):
            device.resolve_device("mps")


def test_auto_stays_on_the_cpu_and_says_once_that_mps_may_be_faster(monkeypatch, capsys):
    import torch

    from gankit import device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device._say_mps_may_be_faster.cache_clear()
    try:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
        assert device.resolve_device("auto") == torch.device("cpu")
        assert capsys.readouterr().err == ""
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
        assert device.resolve_device("auto") == torch.device("cpu")
        assert device.resolve_device("auto") == torch.device("cpu")
        said = capsys.readouterr().err.splitlines()
        assert len(said) == 1 and "--device mps may be faster" in said[0]
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a CUDA GPU: taken, nothing said about MPS
        device._say_mps_may_be_faster.cache_clear()
        assert device.resolve_device("auto") == torch.device("cuda")
        assert capsys.readouterr().err == ""
    finally:
        device._say_mps_may_be_faster.cache_clear()


def test_mps_trains_in_fp32_unless_bf16_is_asked_for_where_it_runs(monkeypatch):
    import torch

    from gankit import device

    mps = torch.device("mps")
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)  # (the CPU's bf16 has no say on MPS)
    assert device.resolve_precision("auto", mps) is None
    assert device.resolve_precision("fp32", mps) is None
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU: use fp32 on MPS"):
        device.resolve_precision("fp16", mps)
    for macos14 in (True, False):
        monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: macos14)
        if macos14:
            assert device.resolve_precision("bf16", mps) == torch.bfloat16
        else:
            with pytest.raises(ConfigError, match="bf16 on MPS needs macOS 14 or newer: use fp32"):
                device.resolve_precision("bf16", mps)



def test_the_recipe_line_names_the_model_loss_strategy_optimizer_latent_and_the_tricks_on():
    """A run's start named images, resolution, device and budget, never the recipe: a DCGAN with BCE, the monitored
    strategy and label smoothing looked like any other run. One line of the config's own key names says it, the
    tricks that are off left out."""
    from pathlib import Path

    from gankit.config import recipe_line

    assert recipe_line(build_config({})) == ("recipe: dcgan ngf 64 ndf 64, loss bce, strategy classic, adam lr_g 0.00015 "
                                             "lr_d 0.00015, nz 100 normal")
    configs = Path(__file__).resolve().parents[1] / "configs"
    assert recipe_line(build_config(read_yaml(configs / "birds64_wgan_clip.yaml"))).splitlines()[0] == (
        "recipe: dcgan ngf 64 ndf 64, loss wgan (clip 0.01), strategy critic (n_critic 5; critic_boost 100 for the "
        "first 25 G steps and every 500th), rmsprop lr_g 5e-05 lr_d 5e-05, nz 100 normal")
    assert recipe_line(build_config(read_yaml(configs / "pokemon64_acgan_type.yaml"),
                                    parse_sets(["model.upsample=colorpicker", "train.ema=0.999"]))) == (
        "recipe: acgan ngf 64 ndf 64 (upsample colorpicker), loss bce, strategy classic, adam lr_g 0.0002 lr_d 0.0002, "
        "nz 100 normal; label_smoothing 0.1, instance_noise 0.1 over 100 epochs, g_dropout 0.1\n"
        "recipe (also): ema 0.999, g_act leaky_relu")  # (the tricks past RECIPE_WIDTH on the next line)
    monitored = build_config(read_yaml(configs / "pokemon64_dcgan_monitoring.yaml"))
    assert recipe_line(monitored).endswith("strategy monitored (monitor_factor 0.8), adam lr_g 0.00015 lr_d 0.00015, "
                                           "nz 16 normal; label_smoothing 0.1 two-sided, mbd_features 100")


def test_the_recipe_names_the_other_settings_of_a_preset_on_a_line_of_their_own():
    """rps300_dcgan.yaml's recipe line said 'dcgan ngf 32 ndf 32 ... d_dropout 0.3' and nothing of its maxpool D
    without norm, leaky G, Xavier init, Keras' BatchNorm and Adam settings: a second line names them, and no preset's
    line runs past RECIPE_WIDTH (fast_small_data.yaml's tricks alone took 234 characters)."""
    from pathlib import Path

    from gankit.config import RECIPE_WIDTH, recipe_line

    configs = Path(__file__).resolve().parents[1] / "configs"
    assert recipe_line(build_config(read_yaml(configs / "rps300_dcgan.yaml"))) == (
        "recipe: dcgan ngf 32 ndf 32, loss bce, strategy alternating, adam lr_g 0.0001 lr_d 0.0001, nz 100 normal; "
        "d_dropout 0.3\n"
        "recipe (also): d_norm none, g_act leaky_relu, leaky_slope 0.3, d_downsample maxpool, init xavier_uniform, "
        "bn_momentum 0.01, bn_eps 0.001, batch_size 32, beta1 0.9, eps 1e-07")
    assert recipe_line(build_config(read_yaml(configs / "birds64_wgan_clip.yaml"))).splitlines()[1] == (
        "recipe (also): kernel 5, init_std 0.01, bn_momentum 0.5, bn_eps 0.001, rmsprop_alpha 0.9")
    fast = recipe_line(build_config(read_yaml(configs / "fast_small_data.yaml"))).splitlines()
    assert fast[1] == ("recipe (also): augment color,translation,cutout augment_p 0 ada_target 0.6, ema 0.995, "
                       "lr_decay linear from 0, d_norm none, beta1 0, beta2 0.9")
    for preset in sorted(configs.glob("*.yaml")):
        lines = recipe_line(build_config(read_yaml(preset))).splitlines()
        assert lines[0].startswith("recipe: ") and all(line.startswith("recipe (also): ") for line in lines[1:]), preset
        assert max(map(len, lines)) <= RECIPE_WIDTH, preset


def test_the_recipe_names_data_flip_where_it_is_not_the_default_for_its_data():
    """`--set data.flip=false` on a folder (D sees the images unmirrored) left the recipe lines as they were: flip is
    named where it differs from its data's default, on for a folder, off for the built-in MNIST."""
    from pathlib import Path

    from gankit.config import recipe_line

    def also(data):
        return recipe_line(build_config({"data": data})).splitlines()[1:]

    assert also({"path": "images", "flip": False}) == ["recipe (also): flip false"]
    assert also({"flip": True}) == also({"path": "builtin:mnist", "flip": True}) == ["recipe (also): flip"]
    assert also({"path": "images", "flip": True}) == also({"flip": False}) == also({"path": "images"}) == also({}) == []
    rps = read_yaml(Path(__file__).resolve().parents[1] / "configs" / "rps300_dcgan.yaml")
    assert recipe_line(build_config(rps, {"data": {"path": "images"}})).endswith("beta1 0.9, eps 1e-07, flip false")


def _other_value(key: str, default):
    """A valid value of the model or train `key` other than its `default`."""
    import typing

    from gankit.config import CHOICES, CLOSED_UNIT_INTERVAL, UNIT_INTERVAL, ModelConfig, TrainConfig

    if key in CHOICES:
        return next(c for c in CHOICES[key] if c != default)
    if default is None:  # (bool, int or float or null)
        kind = typing.get_type_hints(ModelConfig if key.startswith("model.") else TrainConfig)[key.split(".")[1]]
        return next(value for value in (True, 3, 1.5) if type(value) in typing.get_args(kind))
    if isinstance(default, bool):
        return not default
    if isinstance(default, str):  # the texts without CHOICES
        return {"train.augment": "color", "train.device": "cpu"}[key]
    if isinstance(default, int):
        return default + 1
    return 0.5 if default == 0 else default / 2 if key in UNIT_INTERVAL | CLOSED_UNIT_INTERVAL else default * 2


def test_the_recipe_names_every_model_and_train_setting_that_acts_and_no_machine_setting():
    """The recipe line left out model.g_act, kernel, init, bn_eps, train.eps, Adam's betas...: every model and train
    key but NOT_RECIPE (a new one too, with no list to extend) changes the line where it has an effect (under one of
    these configs), and no NOT_RECIPE key changes it (threads, precision, the budget...)."""
    from gankit.config import ACTS_ONLY_WITH, NOT_RECIPE, Config, flatten, recipe_line, to_dict

    bases = [{}, {"model": {"arch": "acgan", "upsample": "colorpicker", "mbd_features": 1, "init": "normal"}},
             {"train": {"strategy": "critic", "critic_boost": 100, "loss": "wgan", "optimizer": "rmsprop"}},
             {"train": {"strategy": "monitored", "label_smoothing": 0.1, "lr_decay": "linear", "instance_noise": 0.1,
                        "topk": 0.5, "ema": 0.9, "augment": "color"}},
             {"train": {"strategy": "boost", "loss": "wgan_gp"}, "model": {"d_norm": "none"}}]
    defaults = flatten(to_dict(Config()))
    keys = [k for k in defaults if k.startswith(("model.", "train."))]
    names = [k.rsplit(".", 1)[1] for k in keys if k not in NOT_RECIPE]
    assert len(set(names)) == len(names)  # the line names a key without its section
    silent = []
    for key in keys:
        value = _other_value(key, defaults[key])
        changed = []
        for base in bases:
            try:
                cfg = build_config(base, parse_sets([f"{key}={str(value).lower() if isinstance(value, bool) else value}"]))
            except ConfigError:
                continue
            acts = key in NOT_RECIPE or key not in ACTS_ONLY_WITH or ACTS_ONLY_WITH[key][0](cfg)
            if not acts or flatten(to_dict(cfg))[key] != value:
                continue
            changed.append(recipe_line(cfg) != recipe_line(build_config(base)))
        assert changed, key
        if (key in NOT_RECIPE) == any(changed):
            silent.append(key)
    assert silent == []


def test_readme_names_every_config_key():
    """README names each config key (as `section.key`, as `key` alone where its section is clear, or by the flag
    that sets it) but the one filled in from the dataset, and names no key config.py lacks: `data.cache_dir` was
    only `$GANKIT_CACHE_DIR` there."""
    import dataclasses
    import re
    from pathlib import Path

    from gankit.cli import _flag_of
    from gankit.config import Config, flatten

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    keys = set(flatten(dataclasses.asdict(Config())))
    missing = sorted(k for k in keys - {"model.channels"}
                     if not re.search(rf"(?<![\w.]){re.escape(k)}(?!\w)", readme)
                     and f"`{k.rsplit('.', 1)[1]}`" not in readme
                     and not re.search(rf"(?<![\w-]){re.escape(_flag_of(k))}(?![\w-])", readme))
    assert missing == []
    sections = "|".join({k.split(".")[0] for k in keys})
    named = set(re.findall(rf"`(?:--set )?((?:{sections})\.\w+)", readme))
    unknown = sorted(k for k in named - keys if not k.endswith(".py"))  # `train.py` is the module
    assert unknown == []
