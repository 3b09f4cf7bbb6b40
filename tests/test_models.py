from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_organelle.errors import ModelError
from napari_organelle.models import (
    ClassSpec,
    ModelCard,
    build_network,
    clear_cache,
    list_models,
    load_model,
    save_model,
)
from napari_organelle.models.io import CARD_FILE, WEIGHTS_FILE

from ._models import make_tiny_model, tiny_card


def test_save_and_load_round_trip_gives_same_predictions(tmp_path):
    card = tiny_card()
    network = build_network(card).eval()
    save_model((card, network), tmp_path / "m", half_precision=False)
    loaded = load_model(tmp_path / "m")
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(network(x).numpy(), loaded.network(x).numpy(), atol=1e-5)
    assert loaded.card.class_names == ["mitochondria", "membranes"]
    assert loaded.card.classes[0].kind == "instance"
    assert loaded.card.classes[0].color == "#ff7f0e"  # default organelle colour


def test_half_precision_file_is_half_the_size_and_close(tmp_path):
    card = tiny_card()
    network = build_network(card).eval()
    save_model((card, network), tmp_path / "full", half_precision=False)
    save_model((card, network), tmp_path / "half")
    full = (tmp_path / "full" / WEIGHTS_FILE).stat().st_size
    half = (tmp_path / "half" / WEIGHTS_FILE).stat().st_size
    assert half < 0.6 * full
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        diff = (network(x) - load_model(tmp_path / "half").network(x)).abs().max()
    assert diff < 0.05


def test_load_caches_the_same_object(tmp_path):
    make_tiny_model(tmp_path / "m")
    clear_cache()
    assert load_model(tmp_path / "m") is load_model(tmp_path / "m")


def test_corrupt_weights_give_a_clear_error(tmp_path):
    folder = make_tiny_model(tmp_path / "m")
    (folder / WEIGHTS_FILE).write_bytes(b"\x00garbage, not safetensors" * 10)
    with pytest.raises(ModelError, match="corrupt or not a safetensors file"):
        load_model(folder)


def test_pickle_file_is_refused_not_executed(tmp_path):
    folder = make_tiny_model(tmp_path / "m")
    torch.save({"weight": torch.zeros(3)}, folder / WEIGHTS_FILE)  # a pickle archive
    with pytest.raises(ModelError, match="corrupt or not a safetensors"):
        load_model(folder)


def test_card_that_does_not_match_weights_is_rejected(tmp_path):
    folder = make_tiny_model(tmp_path / "m")
    card = json.loads((folder / CARD_FILE).read_text())
    card["classes"].append({"name": "er", "kind": "semantic"})
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="does not match its weights"):
        load_model(folder)


def test_card_validation_messages(tmp_path):
    with pytest.raises(ModelError, match="lacks"):
        ModelCard.from_dict({"name": "x"})
    with pytest.raises(ModelError, match="kind must be"):
        ClassSpec("er", kind="blob")
    data = tiny_card().to_dict()
    data["schema_version"] = 99
    with pytest.raises(ModelError, match="newer"):
        ModelCard.from_dict(data)
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        ModelCard.load(tmp_path / "card.json")


def test_models_are_listed_and_found_by_name_and_version(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_ORGANELLE_HOME", str(tmp_path))
    make_tiny_model(tmp_path / "models" / "tiny-em" / "0")
    names = [m.full_name for m in list_models() if not m.bundled]
    assert names == ["tiny-em@0"]
    assert load_model("tiny-em@0").card.name == "tiny-em"
    assert load_model("tiny-em").path == tmp_path / "models" / "tiny-em" / "0"
    with pytest.raises(ModelError, match="no model called 'nope'"):
        load_model("nope")


def test_bundled_models_load_and_fit_the_size_limit():
    bundled = [m for m in list_models() if m.bundled]
    for info in bundled:
        assert (info.path / WEIGHTS_FILE).stat().st_size <= 20 * 1024 * 1024
        model = load_model(info.path)
        assert model.card.training_data, "a bundled model must list its training data"
        assert all(entry.get("licence") for entry in model.card.training_data)


@pytest.mark.parametrize("recipe_name", ["em-organelles", "em-organelles-v3", "em-cell-organelles",
                                         "fluo-organelles"])
def test_bundled_recipes_describe_buildable_models_within_the_size_limit(recipe_name):
    from napari_organelle.training.recipe import find_recipe

    recipe = json.loads(find_recipe(recipe_name).read_text())
    card = ModelCard.from_dict(recipe["card"])
    network = build_network(card)
    parameters = sum(p.numel() for p in network.parameters())
    assert parameters * 2 <= 20 * 1024 * 1024  # float16 weights must stay under 20 MB
    assert card.training_data and all(entry["licence"] for entry in card.training_data)
    assert recipe["evaluate"], "a bundled model must be scored on held-out test data"
    assert recipe["training"]["seed"] == 0


def test_em_recipe_reads_the_shared_data_with_unannotated_classes_ignored(shared_data, tmp_path):
    from napari_organelle.training import IGNORE, load_recipe

    config, _ = load_recipe("em-organelles", tmp_path, shared_data)
    isbi = next(spec for spec in config.datasets if spec.path.name == "em-isbi2012-membranes")
    from napari_organelle.training import load_dataset

    first = ["00"] if (isbi.path / "train" / "images" / "00.tif").exists() else None
    images = load_dataset(isbi, config.card.class_names, config.card.pixel_size_nm, names=first)
    mitochondria = config.card.class_names.index("mitochondria")
    # ISBI annotates only membranes: mitochondria there are unknown, never background
    assert (images[0].target[mitochondria] == IGNORE).all()
    boundary = config.card.class_names.index("cell_boundary")
    assert set(np.unique(images[0].target[boundary])) <= {0, 1, IGNORE}
    assert (images[0].target[boundary] == 1).any()


# ---------------------------------------------------------------------- evidence per class


def test_class_evidence_tells_real_tested_from_simulation_only_classes():
    from napari_organelle.models.evidence import REAL, SIMULATION_ONLY, UNTESTED, class_evidence

    card = tiny_card(classes=[ClassSpec("mitochondria", "instance"), ClassSpec("cell_boundary"),
                              ClassSpec("er"), ClassSpec("golgi"), ClassSpec("lysosomes")])
    card.recipe = {"datasets": [{"path": "lab-em", "class_map": {"mito": "mitochondria"}}]}
    card.metrics = {
        "validation": {"golgi": 0.61},
        "test": {"lab-em": {"mito": {"dice": 0.8}},  # through the recipe's class map
                 "em-drosophila-vnc": {"membranes": {"dice": 0.85, "iou": 0.7}},  # synonym
                 "simulated-test": {"mitochondria": {"dice": 0.9}, "lysosomes": {"dice": 0.7}},
                 "em-missing": {"skipped": "not found"}}}
    card.extra["class_evidence"] = {"er": "simulation only"}
    evidence = class_evidence(card)
    assert list(evidence) == card.class_names
    assert evidence["mitochondria"].status == REAL
    assert evidence["mitochondria"].scores == {"lab-em": 0.8}  # simulated scores left out
    assert evidence["cell_boundary"].describe() == "tested on em-drosophila-vnc: Dice 0.85"
    assert evidence["er"].status == SIMULATION_ONLY and evidence["er"].mark
    assert evidence["er"].describe() == "simulation only: no real test data"
    assert evidence["lysosomes"].status == SIMULATION_ONLY  # scored on simulated images only
    assert "simulated-test: Dice 0.70" in evidence["lysosomes"].describe()
    assert evidence["golgi"].status == UNTESTED and not evidence["golgi"].mark
    assert "validation Dice 0.61" in evidence["golgi"].describe()
    assert evidence["mitochondria"].mark == ""


def test_the_bundled_em_model_marks_its_simulation_only_classes():
    from napari_organelle.models.composite import members
    from napari_organelle.models.evidence import REAL, SIMULATION_ONLY, class_evidence
    from napari_organelle.models.registry import BUNDLED_DIR

    card = ModelCard.load(BUNDLED_DIR / "em-organelles" / CARD_FILE)
    assert {name: item.status for name, item in class_evidence(card).items()} == {
        "mitochondria": REAL, "cell_boundary": REAL, "nuclei": SIMULATION_ONLY,
        "er": SIMULATION_ONLY, "lipid_droplets": SIMULATION_ONLY, "golgi": SIMULATION_ONLY}
    # the real-tested classes come from the network that learnt them from real images
    assert members(card)[0]["classes"] == ["mitochondria", "cell_boundary"]
    assert members(card)[0]["source"] == "em-organelles@2.0.0"


def test_simulation_only_classes_of_a_recipe_and_after_continuing():
    from napari_organelle.models.evidence import (
        continued_simulation_only,
        simulation_only_classes,
    )

    names = ["mitochondria", "cell_boundary", "er"]
    recipe = {"simulated": {"n_train": 10},
              "datasets": [{"path": "em-set", "class_map": {"membranes": "cell_boundary"}}]}
    assert simulation_only_classes(recipe, names) == ["mitochondria", "er"]
    assert simulation_only_classes({"datasets": []}, names) == []  # no simulated images

    base = tiny_card(classes=[ClassSpec("mitochondria", "instance"), ClassSpec("cell_boundary")])
    base.recipe = {"datasets": [{"path": "em-set", "class_map": {"mito": "mitochondria"}}]}
    # mitochondria were learnt from real images by the base; er is new to it
    assert continued_simulation_only(["mitochondria", "er"], base) == ["er"]
    base.extra["class_evidence"] = {"mitochondria": "simulation only"}
    assert continued_simulation_only(["mitochondria", "er"], base) == ["mitochondria", "er"]
