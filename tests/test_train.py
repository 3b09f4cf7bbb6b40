"""Fine-tuning: ignored pixels, honest validation, new classes, early stop, cancel, resume,
lineage, replay and the ``train`` CLI, on tiny models and tiny synthetic data sets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_organelle import durable
from napari_organelle.cli import main
from napari_organelle.errors import InputError
from napari_organelle.evaluation import read_dataset_info
from napari_organelle.models import ClassSpec, load_model
from napari_organelle.models.versions import active_version, list_versions
from napari_organelle.store import open_store
from napari_organelle.training import (
    IGNORE,
    DatasetSpec,
    TrainConfig,
    load_dataset,
    masked_loss,
    split_by_image,
    train,
    train_iter,
)
from napari_organelle.training.finetune import (
    RUN_FILE,
    FinetuneSettings,
    RegisteredVersion,
    RunRecord,
    RunRecordError,
    default_work_dir,
    finetune,
    finetune_iter,
    new_classes,
    read_run,
    register_run,
    resume_settings,
    write_run,
)
from napari_organelle.training.recipe import load_recipe
from napari_organelle.training.sources import (
    data_classes,
    load_source,
    match_classes,
    split_by_group,
)
from napari_organelle.training.trainer import _starting_model

from ._datasets import disc_sample, write_dataset
from ._models import tiny_card

TINY = {"crop": 64, "batch_size": 2, "validate_every": 2, "threads": 1}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def lab_set(tmp_path: Path) -> Path:
    """Four 96x96 images annotated for mitochondria and ER (which the base model lacks)."""
    return write_dataset(tmp_path / "lab-set", n_images=4, classes=("mitochondria", "er"))


def settings(data: list[Path], **changes) -> FinetuneSettings:
    values = {"base": "tiny-em", "data": data, "name": "lab", "minutes": None,
              "iterations": 4, "val_fraction": 0.25, **TINY}
    values.update(changes)
    return FinetuneSettings(**values)


# ---------------------------------------------------------------------- the loss


def test_ignored_pixels_give_no_loss_and_no_gradient():
    logits = torch.randn(2, 2, 16, 16, requires_grad=True)
    target = torch.full((2, 2, 16, 16), IGNORE, dtype=torch.uint8)
    loss = masked_loss(logits, target)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(logits.grad) == 0

    logits.grad = None
    target[:, :, :8] = 1  # top half annotated, bottom half ignored
    masked_loss(logits, target).backward()
    assert torch.count_nonzero(logits.grad[:, :, 8:]) == 0
    assert torch.count_nonzero(logits.grad[:, :, :8]) > 0


# ---------------------------------------------------------------------- validation split


def test_validation_images_are_never_training_images(lab_set):
    images = load_dataset(DatasetSpec(lab_set), ["mitochondria"], None)
    for seed in range(5):
        train_images, val_images = split_by_image(images, 0.25, seed)
        assert val_images
        assert not {i.name for i in train_images} & {i.name for i in val_images}


def test_crops_of_one_image_stay_on_one_side_of_the_split():
    groups = ["a", "a", "a", "b", "b", "c", "d", "d"]
    for seed in range(10):
        train_index, val_index = split_by_group(groups, 0.3, np.random.default_rng(seed))
        assert sorted(train_index + val_index) == list(range(len(groups)))
        assert not {groups[i] for i in train_index} & {groups[i] for i in val_index}
        assert val_index and train_index
    assert len(split_by_group(["a", "b"], 0.5, np.random.default_rng(0))[1]) == 1
    assert split_by_group(["a", "a"], 0.5, np.random.default_rng(0)) == ([0, 1], [])


def test_store_samples_train_with_ignore_outside_the_reviewed_region(tmp_path):
    store = open_store(tmp_path / "store", classes=["mitochondria", "er"])
    rng = np.random.default_rng(1)
    image, masks = disc_sample(rng, 96)
    store.save(image, {"mitochondria": masks["mitochondria"]}, reviewed=[(0, 0, 48, 96)],
               provenance={"source_path": "cell.tif", "source_sha256": "f" * 64})
    store.save(image[:64, :64], {"mitochondria": masks["mitochondria"][:64, :64]},
               reviewed=True, provenance={"source_path": "cell.tif",
                                          "source_sha256": "f" * 64, "crop": (0, 0, 64, 64)})
    source = load_source(store.path, tiny_card(), {})
    assert source.kind == "store" and len(source.images) == 2
    assert len(set(source.groups)) == 1  # both cut from one plane: one group
    target = source.images[0].target
    assert (target[0, 48:] == IGNORE).all() and (target[0, :48] != IGNORE).all()
    assert (target[1] == IGNORE).all()  # membranes: not annotated, not background
    assert source.unused == ["er"]


def test_data_classes_match_model_classes_by_name_synonym_or_map():
    used, unused = match_classes(["membranes", "mito", "synapses"],
                                 ["mitochondria", "cell_boundary"], {"mito": "mitochondria"})
    assert used == {"membranes": "cell_boundary", "mito": "mitochondria"}
    assert unused == ["synapses"]


# ---------------------------------------------------------------------- new classes

def test_new_classes_are_the_data_classes_the_base_lacks_with_their_kind(home, tmp_path):
    store = open_store(tmp_path / "store", classes=["mitochondria", "synapses", "golgi"])
    rng = np.random.default_rng(2)
    for index in range(2):
        image, masks = disc_sample(rng, 64)
        objects = masks["er"].astype(np.uint16) * (index + 1)
        store.save(image, {"mitochondria": masks["mitochondria"]}, reviewed=True,
                   provenance={"source_path": f"cell{index}.tif"},
                   instances={"synapses": objects})
    data = write_dataset(tmp_path / "lab-set", n_images=1, classes=("membranes", "er"))
    (data / "train" / "instances" / "er").mkdir(parents=True)  # er saved as objects there

    found = data_classes([store.path, data, tmp_path / "not-data"])
    assert [(item.name, item.kind) for item in found] == [
        ("mitochondria", "semantic"), ("synapses", "instance"),  # golgi: no sample
        ("er", "instance"), ("membranes", "semantic")]
    assert found[2].sources == ("lab-set",)
    added = new_classes("tiny-em", [store.path, data])
    assert [item.name for item in added] == ["synapses", "er"]
    assert added[0].spec(color="#8c564b") == ClassSpec("synapses", "instance", "#8c564b")
    assert [item.name for item in new_classes("tiny-em", [data], {"er": "membranes"})] == []




def test_added_class_keeps_old_outputs_identical_at_step_zero(home, tmp_path):
    base = load_model("tiny-em")
    config = TrainConfig(out=tmp_path / "run", base="tiny-em", add_classes=[ClassSpec("er")])
    card, network, parent = _starting_model(config)
    assert card.class_names == ["mitochondria", "membranes", "er"]
    assert parent == "tiny-em@0"
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        old = base.network.eval()(x)
        new = network.eval()(x)
    assert new.shape[1] == 3
    torch.testing.assert_close(new[:, :2], old, rtol=0, atol=0)


def test_a_new_class_row_steps_faster_and_the_rest_at_the_base_rate(home, tmp_path):
    import copy
    from dataclasses import replace

    from napari_organelle.training.trainer import _optimizer

    config = TrainConfig(out=tmp_path / "run", base="tiny-em", add_classes=[ClassSpec("er")],
                         learning_rate=1e-3)
    network = _starting_model(config)[1].train()
    twin = copy.deepcopy(network)
    start = copy.deepcopy(network.state_dict())
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))

    def one_step(net: torch.nn.Module, factor: float) -> dict[str, torch.Tensor]:
        optimizer, head = _optimizer(net, replace(config, new_head_factor=factor), [2])
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * group["factor"]
        optimizer.zero_grad()
        net(x).square().mean().backward()
        head.step(optimizer.step)
        return net.state_dict()

    fast, plain = one_step(network, 10.0), one_step(twin, 1.0)
    weight = "segmentation_head.0.weight"
    # One AdamW step from the same gradients: old rows and the body move alike ...
    torch.testing.assert_close(fast[weight][:2], plain[weight][:2])
    torch.testing.assert_close(fast["encoder.conv1.weight"], plain["encoder.conv1.weight"])
    assert not torch.equal(plain[weight][:2], start[weight][:2])
    # ... and the new row moves 10 x as far.
    ratio = (fast[weight][2] - start[weight][2]).abs().sum() / (
        plain[weight][2] - start[weight][2]).abs().sum()
    assert 9.9 < float(ratio) < 10.1


def test_a_frozen_encoder_keeps_its_weights_and_statistics_while_the_decoder_learns(
        home, tmp_path, lab_set):
    images = load_dataset(DatasetSpec(lab_set), ["mitochondria", "membranes"], None)
    config = TrainConfig(out=tmp_path / "run", base="tiny-em", images=images, val_fraction=0.0,
                         iterations=2, freeze_encoder=True, **TINY)
    train(config)
    before = load_model("tiny-em").network.state_dict()
    after = load_model(tmp_path / "run" / "best").network.state_dict()
    encoder = [key for key in before if key.startswith("encoder.")]
    assert any("running_mean" in key for key in encoder)
    for key in encoder:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)
    assert any(not torch.equal(after[key], before[key]) for key in before
               if key.startswith("decoder.") and before[key].is_floating_point())


def test_a_new_class_starts_at_its_share_of_annotated_pixels(home, tmp_path, lab_set):
    from napari_organelle.training.trainer import start_at_prior

    images = load_dataset(DatasetSpec(lab_set), ["mitochondria", "membranes", "er"], None)
    network = _starting_model(TrainConfig(out=tmp_path / "x", base="tiny-em",
                                          add_classes=[ClassSpec("er")]))[1]
    old_bias = network.segmentation_head[0].bias[:2].clone()
    priors = start_at_prior(network, [2], images)
    targets = np.stack([item.target[2] for item in images])
    share = (targets == 1).sum() / (targets != IGNORE).sum()
    assert priors[2] == pytest.approx(share)
    assert float(torch.sigmoid(network.segmentation_head[0].bias[2])) == pytest.approx(share)
    torch.testing.assert_close(network.segmentation_head[0].bias[:2], old_bias)


def test_a_new_head_factor_that_is_not_positive_is_refused(lab_set):
    with pytest.raises(InputError, match="positive"):
        settings([lab_set], new_head_factor=0).check()


def test_unannotated_old_classes_are_filled_with_the_base_models_confident_guesses(
        home, tmp_path):
    from napari_organelle.training.finetune import label_from_base

    er_only = write_dataset(tmp_path / "er-only", n_images=2, classes=("er",))
    base = load_model("tiny-em")
    images = load_dataset(DatasetSpec(er_only), ["mitochondria", "membranes", "er"], None)
    labelled = label_from_base(base.network, images, 2, torch.device("cpu"), confident=0.8)
    for before, after in zip(images, labelled):
        assert (before.target[:2] == IGNORE).all()  # the inputs are left alone
        np.testing.assert_array_equal(after.target[2], before.target[2])  # painted: kept
        from napari_organelle.training.trainer import predict_image

        probability = predict_image(base.network, before.image, 2, torch.device("cpu"))
        sure = (probability >= 204) | (probability <= 51)
        np.testing.assert_array_equal(after.target[:2] != IGNORE, sure)
        np.testing.assert_array_equal(after.target[:2][sure], probability[sure] >= 204)
    # Fully annotated old classes are not touched.
    full = load_dataset(DatasetSpec(er_only), ["er"], None)
    assert label_from_base(base.network, full, 0, torch.device("cpu"))[0] is full[0]


def test_adding_a_class_turns_on_what_protects_the_old_ones_and_plain_runs_do_not(
        home, lab_set):
    adding = finetune(settings([lab_set], add_classes=[ClassSpec("er")], iterations=1))
    plain = finetune(settings([lab_set], name="plain", iterations=1))
    for result, expected in ((adding, True), (plain, False)):
        recipe = load_model(result.version.path).card.recipe
        assert recipe["keep_norm_statistics"] is expected
        assert recipe["freeze_encoder"] is expected
    assert load_model(adding.version.path).card.recipe["new_head_factor"] == 10.0


def test_finetuning_can_teach_old_classes_from_the_base_on_painted_images(home, tmp_path):
    er_only = write_dataset(tmp_path / "er-only", n_images=2, classes=("er",))
    result = finetune(settings([er_only], add_classes=[ClassSpec("er")], val_fraction=0.0,
                               old_classes_from_base=True, keep_norm_statistics=True,
                               new_head_factor=10.0))
    training = load_model(result.version.path).card.extra["lineage"]["settings"]
    assert training["finetune"]["old_classes_from_base"] is True
    assert training["training"]["keep_norm_statistics"] is True
    assert training["training"]["new_head_factor"] == 10.0


# ---------------------------------------------------------------------- the training loop


def tiny_config(tmp_path: Path, lab_set: Path, **changes) -> TrainConfig:
    images = load_dataset(DatasetSpec(lab_set), ["mitochondria", "membranes"], None)
    values = {"out": tmp_path / "run", "card": tiny_card(), "images": images[:3],
              "val_images": images[3:], "iterations": 4, **TINY}
    values.update(changes)
    return TrainConfig(**values)


def test_early_stopping_stops_when_validation_dice_stalls(tmp_path, lab_set, monkeypatch):
    stalled = {"mitochondria": 0.5, "membranes": math.nan}
    monkeypatch.setattr("napari_organelle.training.trainer.validate", lambda *a, **k: stalled)
    config = tiny_config(tmp_path, lab_set, iterations=50, validate_every=1, patience=2)
    result = train(config)
    assert result.stopped == "early-stopped"
    assert result.history[-1]["step"] == 3  # best at 1, then two validations without gain
    assert (result.model_dir / "card.json").exists()


def test_cancel_keeps_the_best_checkpoint(tmp_path, lab_set):
    config = tiny_config(tmp_path, lab_set, iterations=50)
    steps: list[int] = []
    result = train(config, progress=lambda p: steps.append(p.data.get("step", 0)),
                   should_stop=lambda: steps[-1] >= 3)
    assert result.stopped == "cancelled"
    kept = load_model(result.model_dir)
    assert kept.card.extra["training_curve"][-1]["step"] == 2  # the last validation
    assert "mitochondria" in result.after


def test_resume_continues_the_step_count(tmp_path, lab_set):
    first = train(tiny_config(tmp_path, lab_set, iterations=4))
    assert [h["step"] for h in first.history] == [1, 2, 3, 4]
    again = tiny_config(tmp_path, lab_set, iterations=6, resume=True)
    work = train_iter(again)
    reports = []
    try:
        while True:
            reports.append(next(work))
    except StopIteration as finished:
        result = finished.value
    assert [r.data["step"] for r in reports if "loss" in r.data] == [5, 6]
    assert [h["step"] for h in result.history] == [1, 2, 3, 4, 5, 6]


# ---------------------------------------------------------------------- fine-tuning


def test_finetune_registers_a_version_with_lineage(home, lab_set):
    result = finetune(settings([lab_set], add_classes=[ClassSpec("er")]))
    assert result.version is not None and result.version.full_name == "lab@1"
    card = load_model("lab").card
    assert card.class_names == ["mitochondria", "membranes", "er"]
    assert card.parent == "tiny-em@0"
    lineage = card.extra["lineage"]
    assert lineage["parent"] == "tiny-em@0"
    assert len(lineage["data_manifest_sha256"]) == 64
    assert lineage["settings"]["finetune"]["add_classes"][0]["name"] == "er"
    assert lineage["settings"]["training"]["crop"] == 64
    assert lineage["time"]["steps"] == 4 and lineage["time"]["stopped"] == "finished"
    metrics = lineage["metrics"]["validation"]
    assert set(metrics["before"]) == {"mitochondria"}  # er is new: the base has no score
    assert set(metrics["after"]) == {"mitochondria", "er"}
    assert metrics["images"] == result.validation_images and len(metrics["images"]) == 1
    assert any(entry["name"] == "lab-set" for entry in card.training_data)

    manifest = json.loads((result.version.path / "data_manifest.json").read_text())
    assert manifest["sha256"] == lineage["data_manifest_sha256"]
    roles = {entry["item"]: entry["role"] for entry in manifest["files"]}
    held_out = result.validation_images[0].split("/")[1]
    assert roles[f"train/images/{held_out}.tif"] == "validation"
    assert sum(role == "train" for item, role in roles.items() if "images" in item) == 3


def test_same_data_same_hash_other_data_other_hash(home, lab_set, tmp_path):
    quick = {"iterations": 1, "validate_every": 1, "val_fraction": 0.0}
    first = finetune(settings([lab_set], **quick))
    second = finetune(settings([lab_set], **quick))
    other = write_dataset(tmp_path / "other", classes=("mitochondria",), seed=5)
    third = finetune(settings([other], **quick))
    hashes = [load_model(f"lab@{r.version.version}").card.extra["lineage"]
              ["data_manifest_sha256"] for r in (first, second, third)]
    assert hashes[0] == hashes[1] != hashes[2]
    assert [v.version for v in list_versions("lab")] == ["1", "2", "3"]
    assert active_version("lab").version == "1"  # new versions wait to be chosen


def test_finetune_cancel_keeps_the_best_as_a_version(home, lab_set):
    reports = []
    result = finetune(settings([lab_set], iterations=40), progress=reports.append,
                      should_stop=lambda: reports[-1].data.get("step", 0) >= 3)
    assert result.stopped == "cancelled"
    assert result.version is not None
    lineage = load_model(result.version.full_name).card.extra["lineage"]
    assert lineage["time"]["stopped"] == "cancelled" and lineage["time"]["kept_step"] == 2


def test_closing_the_run_then_register_run_keeps_the_best(home, lab_set):
    work = finetune_iter(settings([lab_set], iterations=40))
    for report in work:
        if report.data.get("step", 0) >= 3:
            break
    work.close()  # what napari's worker does on Cancel
    record = read_run(default_work_dir("lab"))
    assert record is not None and record.registered is None and record.base == "tiny-em@0"
    assert set(record.before) == {"mitochondria"}  # the base model was scored first
    result = register_run(default_work_dir("lab"), "cancelled")
    assert result.version.full_name == "lab@1"
    registered = read_run(default_work_dir("lab")).registered
    assert registered == RegisteredVersion("lab@1", result.card.extra["weights_sha256"])
    assert register_run(default_work_dir("lab"), "cancelled").version.full_name == "lab@1"
    assert len(list_versions("lab")) == 1  # registered once


def test_replay_watches_the_base_training_data(home, lab_set, tmp_path):
    root = tmp_path / "shared"
    write_dataset(root / "old-set", n_images=5, classes=("mitochondria", "membranes"), seed=3)
    base_dir = home / "models" / "tiny-em" / "0"
    card = json.loads((base_dir / "card.json").read_text())
    card["recipe"] = {"datasets": [{"path": "old-set", "split": "train", "class_map": {},
                                    "weight": 1.0}]}
    (base_dir / "card.json").write_text(json.dumps(card))
    result = finetune(settings([lab_set], replay=0.3, data_root=root))
    assert result.monitor_after and "membranes" in result.monitor_after
    assert not math.isnan(result.monitor_before["mitochondria"])
    lineage = load_model("lab").card.extra["lineage"]
    assert {d["name"]: d["role"] for d in lineage["data"]} == {"lab-set": "train",
                                                              "old-set": "replay"}
    assert lineage["metrics"]["replay_validation"]["after"]

    missing = finetune(settings([lab_set], replay=0.3, data_root=tmp_path / "nowhere",
                                iterations=1, val_fraction=0.0))
    assert any("old-set is not on this machine" in note for note in missing.notes)


def test_no_common_class_is_a_clear_error(home, tmp_path):
    golgi = write_dataset(tmp_path / "golgi-set", classes=("er",))
    with pytest.raises(Exception, match="none is a class of the model"):
        finetune(settings([golgi]))


# ---------------------------------------------------------------------- the CLI


def test_train_cli_end_to_end(home, lab_set, capsys):
    args = ["train", "--base", "tiny-em", "--data", str(lab_set), "--out", "lab",
            "--iterations", "4", "--crop", "64", "--batch-size", "2", "--validate-every", "2",
            "--threads", "1", "--val-fraction", "0.25", "--add-classes", "er"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "kept lab@1 (finished), parent tiny-em@0" in out
    assert "validation Dice on 1 held-out image(s)" in out

    assert main(["train", "--out", "lab", "--resume", "--iterations", "6", "--activate"]) == 0
    assert "kept lab@2" in capsys.readouterr().out
    assert active_version("lab").version == "2"
    lineage = load_model("lab").card.extra["lineage"]
    assert lineage["time"]["steps"] == 6
    assert lineage["settings"]["finetune"]["add_classes"][0]["name"] == "er"  # from the run

    assert main(["train", "--base", "tiny-em", "--out", "lab"]) == 1
    assert "needs --data" in capsys.readouterr().err


def test_train_cli_adds_the_data_classes_the_base_lacks(home, lab_set, capsys):
    base_dir = home / "models" / "tiny-em" / "0"
    card = json.loads((base_dir / "card.json").read_text())
    card["extra"]["class_evidence"] = {"mitochondria": "simulation only",
                                       "membranes": "simulation only"}
    (base_dir / "card.json").write_text(json.dumps(card))
    common = ["train", "--base", "tiny-em", "--data", str(lab_set), "--iterations", "2",
              "--crop", "64", "--batch-size", "2", "--validate-every", "2", "--threads", "1",
              "--val-fraction", "0.25"]
    assert main([*common, "--out", "lab", "--add-classes", "golgi"]) == 1
    assert "no labels of 'golgi'" in capsys.readouterr().err
    assert main([*common, "--out", "lab", "--add-classes"]) == 0  # alone: every new class
    card = load_model("lab").card
    assert card.class_names == ["mitochondria", "membranes", "er"]
    assert card.class_spec("er").kind == "semantic"  # as the data set saves it
    # learnt from the lab's (real) images now; membranes were not in the data
    assert card.extra["class_evidence"] == {"membranes": "simulation only"}


def test_a_recipe_with_simulated_images_marks_the_classes_no_real_set_teaches(
        home, tmp_path, monkeypatch):
    monkeypatch.setattr("napari_organelle.training.simulated.simulated_images",
                        lambda *args, **kwargs: [])
    recipe = {"card": tiny_card(classes=[ClassSpec("mitochondria", "instance"),
                                         ClassSpec("membranes"), ClassSpec("er")]).to_dict(),
              "simulated": {"n_train": 1, "n_val": 1}, "datasets": [], "training": {}}
    path = tmp_path / "sim.json"
    path.write_text(json.dumps(recipe))
    config, _ = load_recipe(path, tmp_path / "run")
    assert config.card.extra["class_evidence"] == {"mitochondria": "simulation only",
                                                   "membranes": "simulation only",
                                                   "er": "simulation only"}

    # Continuing from a base that learnt mitochondria from real images: only er stays marked.
    config.base = "tiny-em"
    card, _network, _parent = _starting_model(config)
    assert card.extra["class_evidence"] == {"er": "simulation only"}


def test_simulated_em_sections_teach_only_the_classes_listed():
    from napari_organelle.simulation.em_cells import simulate_em_cell
    from napari_organelle.training.simulated import simulated_em_images

    images = simulated_em_images(2, ["mitochondria", "nuclei", "er"], 7, ["nuclei", "er"],
                                 shape=(160, 160))
    for index, item in enumerate(images):
        drawn = simulate_em_cell(7 + index, (160, 160), 8.0)
        assert (item.target[0] == IGNORE).all()  # mitochondria: real data teaches them
        np.testing.assert_array_equal(item.target[1], drawn.labels["nuclei"] > 0)
        np.testing.assert_array_equal(item.target[2], drawn.labels["er"] > 0)
        assert item.image.dtype == np.float32 and item.image.shape == (160, 160)
    assert images[0].target[2].any(), "a simulated section without ER teaches nothing"
    with pytest.raises(InputError, match="lacks"):
        simulated_em_images(1, ["nuclei"], 0, ["er"], shape=(64, 64))
    with pytest.raises(InputError, match="does not draw"):
        simulated_em_images(1, ["synapses"], 0, ["synapses"], shape=(64, 64))


def em_sim_recipe(tmp_path: Path, classes: list[ClassSpec], share: float | None = 0.5) -> Path:
    recipe = {"card": tiny_card(classes=classes, pixel_size_nm=8.0).to_dict(),
              "simulated": {"simulator": "em-cells", "classes": ["er"], "n_train": 2,
                            "n_val": 1, "shape": [96, 96], "seed": 4, "share": share},
              "datasets": [], "training": TINY | {"iterations": 2, "learning_rate": 1e-3}}
    path = tmp_path / "em-sim.json"
    path.write_text(json.dumps(recipe))
    return path


def test_a_recipe_continuing_from_a_base_adds_its_simulation_only_classes(home, tmp_path,
                                                                          lab_set):
    from napari_organelle.training.trainer import _gather_images

    path = em_sim_recipe(tmp_path, [ClassSpec("mitochondria", "instance"),
                                    ClassSpec("membranes"), ClassSpec("er")])
    config, _ = load_recipe(path, tmp_path / "run", base="tiny-em")
    config.datasets = [DatasetSpec(lab_set, "train", {"mitochondria": "mitochondria"})]
    # 40 % of the crops from the simulated sections, whatever their area.
    train_images, _ = _gather_images(config, config.card)
    weights = {name: sum(i.weight * i.image.size for i in train_images if i.source == name)
               for name in {i.source for i in train_images}}
    assert weights["simulated-em"] / sum(weights.values()) == pytest.approx(0.5)

    result = train(config)
    card = load_model(result.model_dir).card
    assert card.class_names == ["mitochondria", "membranes", "er"]
    assert card.parent == "tiny-em@0"
    assert card.extra["class_evidence"] == {"er": "simulation only"}


def test_a_recipe_whose_classes_do_not_extend_the_base_in_order_is_refused(home, tmp_path):
    path = em_sim_recipe(tmp_path, [ClassSpec("er"), ClassSpec("mitochondria", "instance"),
                                    ClassSpec("membranes")])
    config, _ = load_recipe(path, tmp_path / "run", base="tiny-em")
    with pytest.raises(InputError, match="followed by the new ones"):
        _starting_model(config)


def test_a_share_of_simulated_crops_outside_0_1_is_refused(home, tmp_path, lab_set):
    from napari_organelle.training.trainer import _gather_images

    path = em_sim_recipe(tmp_path, [ClassSpec("mitochondria", "instance"),
                                    ClassSpec("membranes"), ClassSpec("er")], share=1.0)
    config, _ = load_recipe(path, tmp_path / "run", base="tiny-em")
    config.datasets = [DatasetSpec(lab_set, "train", {"mitochondria": "mitochondria"})]
    with pytest.raises(InputError, match="between 0 and 1"):
        _gather_images(config, config.card)


# ---------------------------------------------------------------------- the run record


def a_record(tmp_path: Path) -> RunRecord:
    return RunRecord(
        settings=settings([tmp_path / "lab-set"], add_classes=[ClassSpec("er")],
                          class_map={"mito": "mitochondria"}),
        base="tiny-em@0", classes=["mitochondria", "membranes", "er"],
        data_manifest_sha256="ab" * 32, started="2024-05-01T10:00:00+00:00", device="cpu",
        added_classes=["er"],
        data=[{"name": "lab-set", "kind": "dataset", "role": "train", "training_images": 3,
               "validation_images": 1, "class_map": {}, "licence": "CC0"}],
        validation_images=["lab-set/image_3"], training_images=3, notes=["a note"],
        before={"mitochondria": 0.25}, registered=RegisteredVersion("lab@1", "cd" * 32))


def test_a_run_record_round_trips_through_run_json(tmp_path):
    record = a_record(tmp_path)
    write_run(tmp_path, record)
    again = read_run(tmp_path)
    assert again == record
    assert again.settings.add_classes == [ClassSpec("er")]
    assert again.settings.data == [tmp_path / "lab-set"]
    on_disk = json.loads((tmp_path / RUN_FILE).read_text())
    assert on_disk["registered"] == {"version": "lab@1", "weights_sha256": "cd" * 32}
    assert on_disk["settings"]["name"] == "lab"  # the layout earlier versions wrote
    assert read_run(tmp_path / "elsewhere") is None  # no record: no run, not an error


def test_a_record_from_a_later_version_with_more_keys_still_reads(tmp_path):
    data = a_record(tmp_path).to_dict()
    data["gpu_hours"] = 3
    del data["registered"], data["notes"]  # older records lack these
    (tmp_path / RUN_FILE).write_text(json.dumps(data))
    record = read_run(tmp_path)
    assert record.registered is None and record.notes == []


@pytest.mark.parametrize(("content", "named"), [
    (b'{"settings": {"base": "tiny-em", "data": [], "na', "not valid JSON"),  # torn
    (b"\xff\xfe garbage", "not text"),
    (b"[1, 2, 3]", "JSON list"),
    (b'{"base": "tiny-em@0"}', "'settings' is missing"),
    (None, "'before' should map class names to numbers"),
    (None, "'classes' should be a list, not text"),
])
def test_a_damaged_run_record_is_reported_not_taken_as_no_run(home, tmp_path, content, named):
    folder = default_work_dir("lab")
    folder.mkdir(parents=True)
    if content is None:
        data = a_record(tmp_path).to_dict()
        if "before" in named:
            data["before"] = {"mitochondria": "high"}
        else:
            data["classes"] = "mitochondria"
        content = json.dumps(data).encode()
    (folder / RUN_FILE).write_bytes(content)

    with pytest.raises(RunRecordError) as caught:
        read_run(folder)
    message = str(caught.value)
    assert str(folder / RUN_FILE) in message and named in message
    assert "without resuming" in message  # what to do
    assert isinstance(caught.value, InputError)  # shown to the user, not a traceback

    with pytest.raises(RunRecordError):
        resume_settings("lab")
    with pytest.raises(RunRecordError):
        register_run(folder, "cancelled")
    with pytest.raises(RunRecordError):
        next(finetune_iter(settings([tmp_path]), resume=True))
    assert main(["train", "--out", "lab", "--resume"]) == 1  # the CLI says so, no traceback


def test_a_crash_while_rewriting_the_record_keeps_the_previous_one(tmp_path, monkeypatch):
    record = a_record(tmp_path)
    write_run(tmp_path, record)
    changed = a_record(tmp_path)
    changed.registered = RegisteredVersion("lab@2", "ef" * 32)

    def killed(*_args):
        raise KeyboardInterrupt  # the process is stopped between writing and renaming

    monkeypatch.setattr(durable.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_run(tmp_path, changed)
    monkeypatch.undo()
    assert read_run(tmp_path) == record  # whole, and the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == [RUN_FILE]  # no half-written temp


def test_a_new_run_replaces_a_damaged_record(home, lab_set):
    folder = default_work_dir("lab")
    folder.mkdir(parents=True)
    (folder / RUN_FILE).write_text("{ not json")
    result = finetune(settings([lab_set], iterations=1, validate_every=1, val_fraction=0.0))
    assert result.version.full_name == "lab@1"
    assert read_run(folder).registered.version == "lab@1"


def test_a_set_marked_validation_only_is_refused_for_training(tmp_path):
    root = write_dataset(tmp_path / "check-only", n_images=1)
    info = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps(
        {**info, "use": "VALIDATION ONLY: never train or fine-tune on it"}))
    with pytest.raises(InputError, match="validation only"):
        load_dataset(DatasetSpec(root), ["mitochondria"], None)
    # scoring still reads it
    assert read_dataset_info(root).validation_only


def test_a_share_of_new_class_crops_outside_0_1_is_refused(lab_set):
    with pytest.raises(InputError, match="centred on new classes"):
        settings([lab_set], new_class_crops=1.5).check()


def test_a_new_network_can_start_from_another_models_encoder(home, tmp_path):
    from napari_organelle.training.trainer import TrainConfig

    card = tiny_card("from-encoder", classes=[ClassSpec("nuclei", "instance")])
    config = TrainConfig(out=tmp_path / "run", card=card, encoder_from="tiny-em@0")
    _, network, parent = _starting_model(config)
    source = load_model("tiny-em@0").network
    for key, value in source.encoder.state_dict().items():
        torch.testing.assert_close(network.encoder.state_dict()[key], value, rtol=0, atol=0)
    assert parent is None  # a new model, not a fine-tuned one

    other = tiny_card("other", classes=[ClassSpec("nuclei")])
    other.encoder = "resnet34"
    with pytest.raises(InputError, match="does not fit"):
        _starting_model(TrainConfig(out=tmp_path / "run2", card=other, encoder_from="tiny-em@0"))
